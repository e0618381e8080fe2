"""Tests for data/mmgcn.py: round trip of the MMGCN layout and one test per bad file."""
import logging
import os

import numpy as np
import pytest

from metafusion_jax.data.rec import interactions
from metafusion_jax.data.rec import mmgcn
from metafusion_jax.data.rec import synthetic as synthetic_rec
from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.metammf import inputs
from reliability import bad_input


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


def test_write_defaults_to_the_names_load_reads(tmp_path, toy):
    assert mmgcn.write_mmgcn(tmp_path, toy) == mmgcn.MOVIELENS_FEATURE_FILES
    out = mmgcn.load_mmgcn(str(tmp_path))
    assert list(out.features) == ["visual", "acoustic", "textual"]
    with pytest.raises(ValueError, match=r"write_mmgcn: modalities \['title'\] have no default "
                                         r"MMGCN file name"):
        mmgcn.write_mmgcn(tmp_path / "t", toy._replace(features={"title": toy.features["visual"]}))


def test_kwai_style_folder_without_acoustic(tmp_path, toy, caplog):
    kwai = toy._replace(features={m: toy.features[m] for m in ("visual", "textual")})
    mmgcn.write_mmgcn(tmp_path, kwai)
    assert not os.path.exists(tmp_path / mmgcn.MOVIELENS_FEATURE_FILES["acoustic"])
    with caplog.at_level(logging.INFO):
        out = mmgcn.load_mmgcn(str(tmp_path))
    assert list(out.features) == ["visual", "textual"]
    assert "found feature files for ['visual', 'textual']; none for ['acoustic']" in caplog.text
    np.testing.assert_array_equal(out.features["textual"], toy.features["textual"])


def test_mmgcn_config_reads_feature_files_and_drops_absent_pca(tmp_path, toy, caplog):
    kwai = toy._replace(features={"v": toy.features["visual"], "t": toy.features["textual"]})
    mmgcn.write_mmgcn(tmp_path, kwai, feature_files={"v": "image.npy", "t": "words.npy"})
    config = metammf_configs.get_config("mmgcn")
    config.data.dir = str(tmp_path)
    config.data.feature_files = (("v", "image.npy"), ("t", "words.npy"))
    config.data.pca_dims = (("v", 8), ("acoustic", 4), ("t", 4))
    inputs.validate_config(config)
    with caplog.at_level(logging.INFO):
        data, _, built = inputs.build(config)
    assert list(data.features) == ["v", "t"] and data.name == "movielens"
    assert "no modalities ['acoustic']: dropping their config.data.pca_dims" in caplog.text
    assert built["features"].shape == (40, 8 + 4)
    config.data.pca_skip_absent = False
    with pytest.raises(ValueError, match=r"pca_dims names modalities \['acoustic'\]"):
        inputs.build(config)


@pytest.mark.parametrize("filename", ["train.npy", "test_full.npy"])
def test_missing_file(tmp_path, toy, filename):
    mmgcn.write_mmgcn(tmp_path, toy, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    os.remove(tmp_path / filename)
    with pytest.raises(ValueError, match=f"{filename}: missing"):
        mmgcn.load_mmgcn(str(tmp_path))


def test_missing_feature_files(tmp_path, toy):
    with pytest.raises(ValueError, match=r"feature_files names modalities \['v'\]"):
        mmgcn.write_mmgcn(tmp_path, toy, feature_files={"v": "v_feat.npy"})
    mmgcn.write_mmgcn(tmp_path, toy._replace(features={"v": toy.features["visual"]}),
                      feature_files={"v": "v_feat.npy"})
    with pytest.raises(ValueError, match="no feature file found; looked for MMGCN's MovieLens "
                                         "names"):
        mmgcn.load_mmgcn(str(tmp_path))
    with pytest.raises(ValueError, match="t.npy: missing t feature file"):
        mmgcn.load_mmgcn(str(tmp_path), feature_files={"v": "v_feat.npy", "t": "t.npy"})


def test_stray_user_id_is_reported_as_a_user_id(tmp_path, toy):
    mmgcn.write_mmgcn(tmp_path, toy)
    rows = np.load(tmp_path / "val_full.npy", allow_pickle=True)
    rows = np.append(rows, np.empty(1, object))
    rows[-1] = [99, toy.n_users + 1]
    np.save(tmp_path / "val_full.npy", rows, allow_pickle=True)
    with bad_input("MMGCN files: a stray user id in val_full.npy",
                   match=r"val_full.npy: user id 99 is >= \d+ \(the smallest stored item id; "
                         r".*A stray user id"):
        mmgcn.load_mmgcn(str(tmp_path))
    rows[-1] = [31, toy.n_users + 1]
    np.save(tmp_path / "val_full.npy", rows, allow_pickle=True)
    with bad_input("MMGCN files: a user id >= the n_users passed",
                   match=r"val_full.npy: user id 31 is >= 30 \(n_users=30\)"):
        mmgcn.load_mmgcn(str(tmp_path), n_users=30)


def test_pickled_dict_in_val_full(tmp_path, toy):
    mmgcn.write_mmgcn(tmp_path, toy)
    np.save(tmp_path / "val_full.npy", np.array({0: [30]}, dtype=object), allow_pickle=True)
    with bad_input("MMGCN files: a pickled dict in val_full.npy",
                   match=r"val_full.npy: expected one row per user \[user, item \+ n_users, "
                         r"...\] .*got a pickled dict"):
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
