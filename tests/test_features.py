"""Tests for metammf/features.py: concatenation; PCA against a covariance eigensolve."""
import numpy as np
import pytest

from metafusion_jax.metammf import features


def _feats(rng, n=30):
    return {"v": rng.normal(size=(n, 8)), "a": rng.normal(size=(n, 5)),
            "t": rng.normal(size=(n, 3))}


def test_raw_concat_and_slices():
    rng = np.random.default_rng(0)
    f = _feats(rng)
    out, slices = features.prepare_item_features(f)
    assert out.dtype == np.float32 and out.shape == (30, 16)
    assert slices == (("v", 0, 8), ("a", 8, 13), ("t", 13, 16))
    for name, a, b in slices:
        np.testing.assert_allclose(out[:, a:b], f[name].astype(np.float32))


def test_pca_matches_eigendecomposition_of_covariance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6))
    out, slices = features.prepare_item_features({"v": x, "t": x[:, :2]}, {"v": 3})
    assert slices == (("v", 0, 3), ("t", 3, 5))
    centred = x - x.mean(0)
    evals, evecs = np.linalg.eigh(centred.T @ centred)
    top = evecs[:, ::-1][:, :3]
    ref = centred @ top
    # components are defined up to sign
    for c in range(3):
        sign = np.sign(ref[:, c] @ out[:, c])
        np.testing.assert_allclose(out[:, c], sign * ref[:, c], rtol=1e-4, atol=1e-4)
    # variances are decreasing and uncorrelated
    cov = np.cov(out[:, :3].T)
    assert np.all(np.diff(np.diag(cov)) < 0)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out[:, 3:], x[:, :2].astype(np.float32))


@pytest.mark.parametrize("feats,pca,match", [
    ({}, None, "at least one modality"),
    ({"v": np.zeros((4, 3))}, {"v": 4}, "pca_dims"),
    ({"v": np.zeros((2, 3))}, {"v": 3}, "pca_dims"),
    ({"v": np.zeros((4, 3))}, {"x": 1}, "not in features"),
    ({"v": np.zeros((4, 3)), "a": np.zeros((5, 3))}, None, "rows"),
    ({"v": np.zeros((4,))}, None, "2-D"),
])
def test_bad_inputs_raise(feats, pca, match):
    with pytest.raises(ValueError, match=match):
        features.prepare_item_features(feats, pca)


def test_standardize_columns_over_items():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 4)) * np.array([1e4, 1.0, 3.0, 0.0]) + 5.0
    z = features.standardize_columns(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z[:, :3].std(0), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(z[:, 3], 0.0)  # a constant column
    f = _feats(rng)
    out, _ = features.prepare_item_features(f, {"v": 2}, standardize=True)
    raw, _ = features.prepare_item_features(
        {k: features.standardize_columns(v) for k, v in f.items()}, {"v": 2})
    np.testing.assert_array_equal(out, raw)  # standardise first, then PCA
    same, _ = features.prepare_item_features(f)
    np.testing.assert_array_equal(same, features.prepare_item_features(f, standardize=False)[0])


def test_check_feature_scale_warns_per_modality():
    rng = np.random.default_rng(3)
    out, slices = features.prepare_item_features({"v": rng.normal(size=(20, 3)) * 1e4,
                                                  "t": rng.normal(size=(20, 2))})
    with pytest.warns(UserWarning, match=r"toy: item features 'v' reach \|x\| = \S+e\+04 "
                                         r"\(RMS \S+\), far above the ~1 scale"):
        warned = features.check_feature_scale(out, slices, "toy")
    assert list(warned) == ["v"]
    assert features.check_feature_scale(out, slices, "toy", limit=1e6) == {}
