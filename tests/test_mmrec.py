"""Tests for data/mmrec.py: round trip of the MMRec layout and bad files."""
import os

import numpy as np
import pytest

from metafusion_jax.data.rec import interactions
from metafusion_jax.data.rec import mmrec
from metafusion_jax.data.rec import synthetic as synthetic_rec


@pytest.fixture
def toy():
    data, _ = synthetic_rec.make_synthetic_microvideo(
        25, 40, 400, modality_dims={"image": 6, "text": 4, "audio": 3}, seed=1)
    return data._replace(name="baby")


def test_round_trip(tmp_path, toy):
    path = mmrec.write_mmrec(tmp_path, toy)
    header = open(path).readline().split()
    assert header == ["userID", "itemID", "timestamp", "x_label"]
    out = mmrec.load_mmrec(str(tmp_path), "baby")
    assert (out.n_users, out.n_items, list(out.features)) == (25, 40, ["image", "text", "audio"])
    for s in interactions.SPLITS:
        np.testing.assert_array_equal(getattr(out, s), getattr(toy, s))
    np.testing.assert_array_equal(out.features["audio"], toy.features["audio"])


def test_hand_written_file_without_timestamp(tmp_path):
    (tmp_path / "tiny.inter").write_text(
        "x_label\tuserID\titemID\n0\t0\t0\n0\t1\t1\n1\t0\t1\n2\t1\t0\n0\t0\t0\n")
    np.save(tmp_path / "text_feat.npy", np.eye(2, dtype=np.float32))
    out = mmrec.load_mmrec(str(tmp_path), "tiny")
    np.testing.assert_array_equal(out.train, [[0, 0], [1, 1]])  # duplicate (0, 0) dropped
    np.testing.assert_array_equal(out.val, [[0, 1]])
    np.testing.assert_array_equal(out.test, [[1, 0]])


def test_missing_inter(tmp_path, toy):
    mmrec.write_mmrec(tmp_path, toy)
    with pytest.raises(ValueError, match="sports.inter: missing interactions file"):
        mmrec.load_mmrec(str(tmp_path), "sports")


def test_missing_features(tmp_path, toy):
    mmrec.write_mmrec(tmp_path, toy)
    for m in toy.features:
        os.remove(tmp_path / f"{m}_feat.npy")
    with pytest.raises(ValueError, match="no feature file found.*image_feat.npy"):
        mmrec.load_mmrec(str(tmp_path), "baby")


def test_bad_header_and_label(tmp_path):
    (tmp_path / "x.inter").write_text("user\titemID\tx_label\n0\t0\t0\n")
    np.save(tmp_path / "image_feat.npy", np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"x.inter: header .* lacks columns \['userID'\]"):
        mmrec.load_mmrec(str(tmp_path), "x")
    (tmp_path / "x.inter").write_text("userID\titemID\tx_label\n0\t0\t3\n")
    with pytest.raises(ValueError, match=r"x.inter: x_label must be 0.*got values \[3\]"):
        mmrec.load_mmrec(str(tmp_path), "x")
    (tmp_path / "x.inter").write_text("userID\titemID\tx_label\n0\t0.5\t0\n")
    with pytest.raises(ValueError, match="x.inter: userID, itemID and x_label must be integers"):
        mmrec.load_mmrec(str(tmp_path), "x")


def test_item_out_of_range_and_empty_split(tmp_path, toy):
    mmrec.write_mmrec(tmp_path, toy)
    np.save(tmp_path / "image_feat.npy", toy.features["image"][:-1])
    with pytest.raises(ValueError, match="feature files disagree"):
        mmrec.load_mmrec(str(tmp_path), "baby")
    (tmp_path / "y.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n")
    for m in toy.features:
        os.remove(tmp_path / f"{m}_feat.npy")
    np.save(tmp_path / "image_feat.npy", np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="y.inter: val pairs are empty"):
        mmrec.load_mmrec(str(tmp_path), "y")
    (tmp_path / "y.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t1\n0\t5\t2\n")
    with pytest.raises(ValueError, match=r"y.inter: test pairs: item ids must lie in \[0, 2\)"):
        mmrec.load_mmrec(str(tmp_path), "y")
