"""Tests for data/mmgcn.py: round trip of the MMGCN layout and one test per bad file."""
import os

import numpy as np
import pytest

from metafusion_jax.data.rec import interactions
from metafusion_jax.data.rec import mmgcn
from metafusion_jax.data.rec import synthetic as synthetic_rec


@pytest.fixture
def toy():
    data, _ = synthetic_rec.make_synthetic_microvideo(30, 40, 600, seed=0)
    return data


def test_round_trip_with_movielens_names(tmp_path, toy):
    files = mmgcn.write_mmgcn(tmp_path, toy, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    assert files == mmgcn.MOVIELENS_FEATURE_FILES
    train = np.load(tmp_path / "train.npy")
    assert train[:, 1].min() >= toy.n_users  # items are stored offset by U
    rows = np.load(tmp_path / "val_full.npy", allow_pickle=True)
    assert rows.dtype == object and len(rows) == toy.n_users and rows[5][0] == 5
    out = mmgcn.load_mmgcn(str(tmp_path))  # default MovieLens names, U inferred
    assert (out.n_users, out.n_items) == (30, 40)
    for s in interactions.SPLITS:
        np.testing.assert_array_equal(out.__getattribute__(s), getattr(toy, s))
    for m in toy.features:
        np.testing.assert_array_equal(out.features[m], toy.features[m])


def test_explicit_mapping_and_n_users(tmp_path, toy):
    feats = dict(toy.features)
    mmgcn.write_mmgcn(tmp_path, toy._replace(features={"v": feats["visual"]}),
                      feature_files={"v": "v_feat.npy"})
    out = mmgcn.load_mmgcn(str(tmp_path), feature_files={"v": "v_feat.npy"}, n_users=30)
    assert list(out.features) == ["v"]
    with pytest.raises(ValueError, match="offset by n_users=35"):
        mmgcn.load_mmgcn(str(tmp_path), feature_files={"v": "v_feat.npy"}, n_users=35)


@pytest.mark.parametrize("filename", ["train.npy", "test_full.npy", "FeatureAudio_avg_normal.npy"])
def test_missing_file(tmp_path, toy, filename):
    mmgcn.write_mmgcn(tmp_path, toy, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    os.remove(tmp_path / filename)
    with pytest.raises(ValueError, match=f"{filename}: missing"):
        mmgcn.load_mmgcn(str(tmp_path))


def test_train_wrong_shape_and_dtype(tmp_path, toy):
    mmgcn.write_mmgcn(tmp_path, toy, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    np.save(tmp_path / "train.npy", np.zeros((5, 3), np.int64))
    with pytest.raises(ValueError, match=r"train.npy: expected an int array of shape \[E, 2\]"):
        mmgcn.load_mmgcn(str(tmp_path))
    np.save(tmp_path / "train.npy", np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="train.npy: expected an int array"):
        mmgcn.load_mmgcn(str(tmp_path))


def test_item_id_out_of_range(tmp_path, toy):
    mmgcn.write_mmgcn(tmp_path, toy, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    train = np.load(tmp_path / "train.npy")
    train[0, 1] = toy.n_users + toy.n_items  # one past the last item
    np.save(tmp_path / "train.npy", train)
    with pytest.raises(ValueError, match=r"train pairs: item ids must lie in \[0, 40\)"):
        mmgcn.load_mmgcn(str(tmp_path))


def test_feature_rows_disagree(tmp_path, toy):
    mmgcn.write_mmgcn(tmp_path, toy, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    np.save(tmp_path / "FeatureText_stl_normal.npy", np.zeros((39, 4), np.float32))
    with pytest.raises(ValueError, match="feature files disagree on the number of items"):
        mmgcn.load_mmgcn(str(tmp_path))


def test_nan_feature(tmp_path, toy):
    mmgcn.write_mmgcn(tmp_path, toy, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    x = toy.features["acoustic"].copy()
    x[3, 0] = np.nan
    np.save(tmp_path / "FeatureAudio_avg_normal.npy", x)
    with pytest.raises(ValueError, match=r"features\['acoustic'\] has 1 NaN/inf"):
        mmgcn.load_mmgcn(str(tmp_path))


def test_bad_user_item_dict(tmp_path, toy):
    mmgcn.write_mmgcn(tmp_path, toy, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    np.save(tmp_path / "user_item_dict.npy", np.zeros(3))
    with pytest.raises(ValueError, match="user_item_dict.npy: expected a pickled dict"):
        mmgcn.load_mmgcn(str(tmp_path))


def test_leakage_between_train_and_test(tmp_path, toy):
    mmgcn.write_mmgcn(tmp_path, toy, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    rows = np.load(tmp_path / "test_full.npy", allow_pickle=True)
    u, i = toy.train[0]
    rows[u] = list(rows[u]) + [int(i) + toy.n_users]
    np.save(tmp_path / "test_full.npy", rows, allow_pickle=True)
    with pytest.raises(ValueError, match="both train and test"):
        mmgcn.load_mmgcn(str(tmp_path))
