"""Tests for metammf/item_knn.py: topk(cos), rnorm and the sparse propagation vs dense NumPy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metammf import item_knn
from reliability import bad_input

pytestmark = pytest.mark.usefixtures("fast_compile_module")

I = 7
SLICES = (("v", 0, 4), ("t", 4, 7))


def _feats(seed=0):
    return np.random.default_rng(seed).normal(size=(I, 7)).astype(np.float32)


def _dense(idx, w):
    out = np.zeros((I, I))
    np.add.at(out, (np.repeat(np.arange(I), idx.shape[-1]), np.asarray(idx).ravel()),
              np.asarray(w, np.float64).ravel())
    return out


def test_cosine_topk_keeps_the_k_largest_and_the_diagonal():
    x = _feats()[:, :4].astype(np.float64)
    vals, idx = item_knn.cosine_topk(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32), 3)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    for i in range(I):
        top = np.argsort(-sim[i])[:3]
        np.testing.assert_array_equal(np.asarray(idx[i]), top)
        np.testing.assert_allclose(vals[i], sim[i, top], rtol=1e-5)
        assert idx[i, 0] == i   # cos(x_i, x_i) = 1 is the largest


def test_rnorm_is_s_over_sqrt_of_row_sums_also_for_a_stack():
    x = jnp.asarray(_feats(1))
    vals, idx = item_knn.traced_topk(x, SLICES, 3)
    vals = jnp.abs(vals)  # positive row sums
    dense = _dense(idx[0], vals[0])
    r = dense.sum(1)
    np.testing.assert_allclose(_dense(idx[0], item_knn.rnorm(vals[0], idx[0])),
                               dense / np.sqrt(r[:, None] * r[None, :]), rtol=1e-5)
    # Stacked: the sum of the K graphs is normalised once.
    total = _dense(idx[0], vals[0]) + _dense(idx[1], vals[1])
    r = total.sum(1)
    w = item_knn.rnorm(vals, idx)
    np.testing.assert_allclose(_dense(idx[0], w[0]) + _dense(idx[1], w[1]),
                               total / np.sqrt(r[:, None] * r[None, :]), rtol=1e-5)


def test_rows_with_zero_sum_normalise_to_zero_and_zero_features_stay_finite():
    vals = jnp.array([[1.0, 0.0], [0.0, 0.0], [0.5, 0.5]])
    idx = jnp.array([[0, 1], [1, 0], [2, 0]], jnp.int32)
    w = item_knn.rnorm(vals, idx)
    np.testing.assert_allclose(w, [[1.0, 0.0], [0.0, 0.0], [0.5, 0.5 / np.sqrt(1.0)]],
                               rtol=1e-6)
    x = jnp.asarray(_feats()).at[2].set(0.0)
    vals, _ = item_knn.cosine_topk(x, x, 2)
    assert np.all(np.isfinite(vals))


def test_propagate_is_the_sparse_matrix_product():
    x = jnp.asarray(_feats(2))
    vals, idx = item_knn.cosine_topk(x, x, 3)
    h = np.random.default_rng(3).normal(size=(I, 2))
    np.testing.assert_allclose(item_knn.propagate(idx, vals, jnp.asarray(h, jnp.float32)),
                               _dense(idx, vals) @ h, rtol=1e-5, atol=1e-6)


def test_host_topk_in_chunks_equals_the_traced_version():
    feats = _feats(4)
    vals, idx = item_knn.host_topk(feats, SLICES, 3, chunk=3)   # chunk < I: three blocks
    assert vals.shape == (2, I, 3) and idx.dtype == np.int32
    t_vals, t_idx = item_knn.traced_topk(jnp.asarray(feats), SLICES, 3)
    np.testing.assert_array_equal(idx, t_idx)
    np.testing.assert_allclose(vals, t_vals, rtol=1e-6)


def test_check_k():
    assert item_knn.check_k(10, I, "here") == I
    with bad_input("item kNN graph: knn_k < 1", match="knn_k must be >= 1"):
        item_knn.check_k(0, I, "make_freedom")
