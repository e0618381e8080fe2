"""Tests for metammf/layers.py: factored fusion == explicit per-item weights, repo CP parity."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metammf import layers


pytestmark = pytest.mark.usefixtures("fast_compile_module")

S, R = 5, 3


def _rand_params(kind, din, dout, seed=0):
    """Init, then replace every leaf by N(0,1) so the dynamic parts are not near zero."""
    params = layers.FUSION_KINDS[kind].init(jax.random.key(seed), din, dout, S, R)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32),
                                  params)


def _explicit(kind, params, x, s):
    weights = jax.vmap(layers.FUSION_KINDS[kind].item_weight, in_axes=(None, 0))(params, s)
    return jnp.einsum("ni,nio->no", x, weights)


@pytest.mark.parametrize("kind", sorted(layers.FUSION_KINDS))
@pytest.mark.parametrize("din,dout", [(6, 9), (9, 4)])  # both contraction orders of dense
def test_factored_equals_per_item_weights(kind, din, dout):
    rng = np.random.default_rng(1)
    params = _rand_params(kind, din, dout)
    x = jnp.asarray(rng.normal(size=(7, din)), jnp.float32)
    s = jnp.asarray(rng.normal(size=(7, S)), jnp.float32)
    got = jax.jit(layers.FUSION_KINDS[kind].apply)(params, x, s)
    np.testing.assert_allclose(got, _explicit(kind, params, x, s), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("din,dout", [(6, 9), (9, 4)])
def test_dense_equals_numpy_loop(din, dout):
    rng = np.random.default_rng(2)
    params = _rand_params("dense", din, dout)
    m, t = np.asarray(params["M"], np.float64), np.asarray(params["T"], np.float64)
    x, s = rng.normal(size=(7, din)), rng.normal(size=(7, S))
    ref = np.stack([x[i] @ (m + sum(s[i, k] * t[k] for k in range(S))) for i in range(7)])
    got = layers.FUSION_KINDS["dense"].apply(params, jnp.asarray(x, jnp.float32),
                                             jnp.asarray(s, jnp.float32))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_cp_equals_numpy_tensor():
    """Paper CP: T = sum_r a_r o b_r o c_r, W_i = M + T x_3 s_i."""
    rng = np.random.default_rng(3)
    p = {k: np.asarray(v, np.float64) for k, v in _rand_params("cp", 6, 4).items()}
    tensor = np.einsum("ir,ro,rk->iok", p["A"], p["B"], p["C"])
    x, s = rng.normal(size=(7, 6)), rng.normal(size=(7, S))
    ref = np.stack([x[i] @ (p["M"] + tensor @ s[i]) for i in range(7)])
    got = layers.FUSION_KINDS["cp"].apply({k: jnp.asarray(v, jnp.float32) for k, v in p.items()},
                                          jnp.asarray(x, jnp.float32), jnp.asarray(s, jnp.float32))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_cp_repo_equals_reference_module_algebra():
    """Numpy version of what the reference CPDLayer computes (spec 2.2), materialised."""
    din, dout = 6, 4
    rng = np.random.default_rng(4)
    p = {k: np.asarray(v, np.float64) for k, v in _rand_params("cp_repo", din, dout).items()}
    assert p["C"].shape == (R * S, 1)
    ab = p["A"] @ p["B"]                                     # [din, dout]
    abc = p["C"] @ ab.reshape(1, din * dout)                 # [R*S, din*dout]
    t = abc.reshape(R, S, din * dout).sum(axis=0)            # [S, din*dout]
    x, s = rng.normal(size=(7, din)), rng.normal(size=(7, S))
    w = p["M"][None] + (s @ t).reshape(7, din, dout)         # [n, din, dout]
    ref = np.einsum("ni,nio->no", x, w)
    got = layers.FUSION_KINDS["cp_repo"].apply(
        {k: jnp.asarray(v, jnp.float32) for k, v in p.items()},
        jnp.asarray(x, jnp.float32), jnp.asarray(s, jnp.float32))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    # and it is one scalar per item times A B: rank of W_i - M is at most R
    dyn = w - p["M"][None]
    for i in range(7):
        np.testing.assert_allclose(dyn[i], (s[i] @ p["C"].reshape(R, S).sum(0)) * ab, atol=1e-9)


def test_static_is_x_at_m():
    rng = np.random.default_rng(5)
    params = layers.FUSION_KINDS["static"].init(jax.random.key(0), 6, 4, S, R)
    assert set(params) == {"M"}
    x = jnp.asarray(rng.normal(size=(7, 6)), jnp.float32)
    s = jnp.asarray(rng.normal(size=(7, S)), jnp.float32)
    np.testing.assert_allclose(layers.FUSION_KINDS["static"].apply(params, x, s),
                               x @ params["M"], rtol=1e-6)


def test_init_bounds_and_shapes():
    p = layers.FUSION_KINDS["dense"].init(jax.random.key(0), 20, 30, S, R)
    assert p["T"].shape == (S, 20, 30) and p["M"].shape == (20, 30)
    t_bound, m_bound = math.sqrt(6 / (600 + S)), math.sqrt(6 / 50)
    assert float(jnp.abs(p["T"]).max()) <= t_bound
    assert float(jnp.abs(p["T"]).max()) > 0.9 * t_bound
    assert 0.9 * m_bound < float(jnp.abs(p["M"]).max()) <= m_bound
    cp = layers.FUSION_KINDS["cp"].init(jax.random.key(0), 20, 30, S, R)
    assert {k: v.shape for k, v in cp.items()} == {"M": (20, 30), "A": (20, R), "B": (R, 30),
                                                   "C": (R, S)}


def test_meta_info_matches_numpy():
    rng = np.random.default_rng(6)
    p = layers.meta_info_init(jax.random.key(1), 8, 10, S)
    x = rng.normal(size=(7, 8)).astype(np.float32)
    ref = np.maximum(x @ np.asarray(p["W1"]) + np.asarray(p["b1"]), 0) @ np.asarray(p["W2"]) \
        + np.asarray(p["b2"])
    np.testing.assert_allclose(layers.meta_info(p, x), ref, rtol=1e-5, atol=1e-5)
    assert layers.meta_info(p, x).shape == (7, S)


@pytest.mark.parametrize("kind", sorted(layers.FUSION_KINDS))
def test_fuse_chain_matches_per_item_loop(kind):
    rng = np.random.default_rng(7)
    dims = [6, 8, 3]
    params = layers.fusion_init(jax.random.key(2), kind, dims, S, R)
    x = jnp.asarray(rng.normal(size=(7, 6)), jnp.float32)
    s = jnp.asarray(rng.normal(size=(7, S)), jnp.float32)
    fk = layers.FUSION_KINDS[kind]

    def one(x_i, s_i):
        h = x_i @ fk.item_weight(params[0], s_i)
        h = jnp.where(h > 0, h, 0.01 * h)
        return h @ fk.item_weight(params[1], s_i)

    got = jax.jit(lambda p, x, s: layers.fuse(kind, p, x, s))(params, x, s)
    np.testing.assert_allclose(got, jax.jit(jax.vmap(one))(x, s),
                               rtol=1e-4, atol=1e-5)


def test_fusion_bad_args_raise():
    with pytest.raises(ValueError, match="fusion kind"):
        layers.fusion_init(jax.random.key(0), "tucker", [4, 2], S, R)
    with pytest.raises(ValueError, match="dims"):
        layers.fusion_init(jax.random.key(0), "cp", [4], S, R)
