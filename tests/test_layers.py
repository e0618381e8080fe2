"""Tests for metammf/layers.py: vmapped per-item fusion == hand-batched algebra == explicit W_i."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metammf import layers


pytestmark = pytest.mark.usefixtures("fast_compile_module")

S, R = 5, 3
KINDS = sorted(layers.FUSION_KINDS)


# ---- the hand-batched algebra of spec 8.3 (the library's previous path), as the reference -------

def _hand_dense(p, x, s):
    t = p["T"]
    n_s, din, dout = t.shape
    if dout >= din:
        kr = (s[:, :, None] * x[:, None, :]).reshape(x.shape[0], n_s * din)
        dyn = kr @ t.reshape(n_s * din, dout)
    else:
        dyn = jnp.einsum("nk,nko->no", s, jnp.einsum("ni,kio->nko", x, t))
    return x @ p["M"] + dyn


def _hand_cp(p, x, s):
    return x @ p["M"] + ((x @ p["A"]) * (s @ p["C"].T)) @ p["B"]


def _hand_cp_repo(p, x, s):
    alpha = s @ p["C"].reshape(-1, s.shape[1]).sum(axis=0)
    return x @ p["M"] + alpha[:, None] * ((x @ p["A"]) @ p["B"])


def _hand_static(p, x, s):
    del s
    return x @ p["M"]


HAND_BATCHED = {"dense": _hand_dense, "cp": _hand_cp, "cp_repo": _hand_cp_repo,
                "static": _hand_static}


def _hand_chain(kind, params, x, s):
    h = x
    for n, p in enumerate(params):
        h = HAND_BATCHED[kind](p, jax.nn.leaky_relu(h, 0.01) if n else h, s)
    return h


def _randomise(params, seed):
    """Every leaf replaced by N(0, 1) so the dynamic parts are not near zero."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)


def _rand_layer(kind, din, dout, seed=0):
    return _randomise(layers.FUSION_KINDS[kind].init(jax.random.key(seed), din, dout, S, R), seed)


def _xs(n, din, seed=1):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=(n, din)), jnp.float32),
            jnp.asarray(rng.normal(size=(n, S)), jnp.float32))


def _explicit(kind, params, x, s):
    weights = jax.vmap(layers.FUSION_KINDS[kind].item_weight, in_axes=(None, 0))(params, s)
    return jnp.einsum("ni,nio->no", x, weights)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("din,dout", [(6, 9), (9, 4)])  # both contraction orders of dense
def test_layer_vmapped_equals_hand_batched_and_per_item_weights(kind, din, dout):
    params = _rand_layer(kind, din, dout)
    x, s = _xs(7, din)
    got = jax.jit(layers.FUSION_KINDS[kind].apply)(params, x, s)
    np.testing.assert_allclose(got, jax.jit(HAND_BATCHED[kind])(params, x, s),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, _explicit(kind, params, x, s), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dims", [(6, 8, 3), (9, 4, 7, 2)])
def test_chain_vmapped_equals_hand_batched_and_item_weight_chain(kind, dims):
    fusion = layers.make_fusion(kind, dims, S, R)
    params = _randomise(fusion.init(jax.random.key(2)), 3)
    x, s = _xs(7, dims[0], seed=4)
    got = jax.jit(fusion.apply)(params, x, s)
    assert got.shape == (7, dims[-1])
    np.testing.assert_allclose(got, jax.jit(_hand_chain, static_argnums=0)(kind, params, x, s),
                               rtol=1e-5, atol=1e-5)
    fl = layers.FUSION_KINDS[kind]

    def one(x_i, s_i):
        h = x_i
        for n, p in enumerate(params):
            h = (jnp.where(h > 0, h, 0.01 * h) if n else h) @ fl.item_weight(p, s_i)
        return h

    np.testing.assert_allclose(got, jax.jit(jax.vmap(one))(x, s), rtol=1e-4, atol=1e-3)
    # apply is apply_one vmapped: row i is apply_one on item i alone.
    np.testing.assert_allclose(jax.jit(fusion.apply_one)(params, x[3], s[3]), got[3],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_equal_hand_batched(kind):
    dims = (9, 6, 3)
    fusion = layers.make_fusion(kind, dims, S, R)
    params = _randomise(fusion.init(jax.random.key(5)), 6)
    x, s = _xs(11, dims[0], seed=7)

    def loss(apply):
        return lambda p, s: jnp.sum(jnp.sin(apply(p, x, s)))

    got = jax.jit(jax.grad(loss(fusion.apply), argnums=(0, 1)))(params, s)
    want = jax.jit(jax.grad(loss(lambda p, x, s: _hand_chain(kind, p, x, s)),
                            argnums=(0, 1)))(params, s)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, want)


def test_dense_equals_numpy_loop():
    params = _rand_layer("dense", 6, 9, seed=2)
    m, t = np.asarray(params["M"], np.float64), np.asarray(params["T"], np.float64)
    x, s = _xs(7, 6, seed=2)
    xn, sn = np.asarray(x, np.float64), np.asarray(s, np.float64)
    ref = np.stack([xn[i] @ (m + sum(sn[i, k] * t[k] for k in range(S))) for i in range(7)])
    got = layers.FUSION_KINDS["dense"].apply(params, x, s)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_cp_equals_numpy_tensor():
    """Paper CP: T = sum_r a_r o b_r o c_r, W_i = M + T x_3 s_i."""
    p = {k: np.asarray(v, np.float64) for k, v in _rand_layer("cp", 6, 4, seed=3).items()}
    tensor = np.einsum("ir,ro,rk->iok", p["A"], p["B"], p["C"])
    x, s = _xs(7, 6, seed=3)
    xn, sn = np.asarray(x, np.float64), np.asarray(s, np.float64)
    ref = np.stack([xn[i] @ (p["M"] + tensor @ sn[i]) for i in range(7)])
    got = layers.FUSION_KINDS["cp"].apply({k: jnp.asarray(v, jnp.float32) for k, v in p.items()},
                                          x, s)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_cp_repo_equals_reference_module_algebra():
    """Numpy version of what the reference CPDLayer computes (spec 2.2), materialised."""
    din, dout = 6, 4
    p = {k: np.asarray(v, np.float64) for k, v in _rand_layer("cp_repo", din, dout, 4).items()}
    assert p["C"].shape == (R * S, 1)
    ab = p["A"] @ p["B"]                                     # [din, dout]
    abc = p["C"] @ ab.reshape(1, din * dout)                 # [R*S, din*dout]
    t = abc.reshape(R, S, din * dout).sum(axis=0)            # [S, din*dout]
    x, s = _xs(7, din, seed=4)
    xn, sn = np.asarray(x, np.float64), np.asarray(s, np.float64)
    w = p["M"][None] + (sn @ t).reshape(7, din, dout)        # [n, din, dout]
    ref = np.einsum("ni,nio->no", xn, w)
    got = layers.FUSION_KINDS["cp_repo"].apply(
        {k: jnp.asarray(v, jnp.float32) for k, v in p.items()}, x, s)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    # and it is one scalar per item times A B: rank of W_i - M is at most R
    dyn = w - p["M"][None]
    for i in range(7):
        np.testing.assert_allclose(dyn[i], (sn[i] @ p["C"].reshape(R, S).sum(0)) * ab, atol=1e-9)


def test_static_is_x_at_m_and_takes_no_meta_vector():
    fusion = layers.make_fusion("static", (6, 4), S, R)
    params = fusion.init(jax.random.key(0))
    assert [set(p) for p in params] == [{"M"}]
    x, _ = _xs(7, 6, seed=5)
    np.testing.assert_allclose(fusion.apply(params, x, None), x @ params[0]["M"], rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_init_is_per_layer_init_on_split_keys(kind):
    """Same structure and values as the per-layer inits on split(key, N) (the earlier init)."""
    dims = (7, 5, 3)
    params = layers.make_fusion(kind, dims, S, R).init(jax.random.key(9))
    keys = jax.random.split(jax.random.key(9), 2)
    want = [layers.FUSION_KINDS[kind].init(k, a, b, S, R)
            for k, a, b in zip(keys, dims[:-1], dims[1:])]
    assert jax.tree.structure(params) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, params, want)


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


def test_make_fusion_bad_args_raise():
    with pytest.raises(ValueError, match=r"one of \['cp', 'cp_repo', 'dense', 'static'\], "
                                         r"got 'tucker'"):
        layers.make_fusion("tucker", (4, 2), S, R)
    with pytest.raises(ValueError, match="dims"):
        layers.make_fusion("cp", (4,), S, R)
    with pytest.raises(ValueError, match="dims"):
        layers.make_fusion("cp", (4, 0), S, R)
    with pytest.raises(ValueError, match="s_dim and rank"):
        layers.make_fusion("cp", (4, 2), 0, R)


@pytest.mark.parametrize("call, match", [
    (lambda f, p: f.apply(p, jnp.ones((3, 5)), jnp.ones((3, S))), r"x must have shape \[I, D_in\]"),
    (lambda f, p: f.apply(p, jnp.ones((6,)), jnp.ones((3, S))), r"x must have shape"),
    (lambda f, p: f.apply(p, jnp.ones((3, 6)), jnp.ones((3, 4))), r"s must have shape \[I, S\]"),
    (lambda f, p: f.apply(p, jnp.ones((3, 6)), jnp.ones((2, S))), r"s must have shape"),
    (lambda f, p: f.apply(p, jnp.ones((3, 6)), None), r"\(cp\): s must have shape"),
    (lambda f, p: f.apply_one(p, jnp.ones((3, 6)), jnp.ones((S,))), r"x_i must have shape"),
    (lambda f, p: f.apply_one(p, jnp.ones((6,)), jnp.ones((3, S))), r"s_i must have shape"),
    (lambda f, p: f.apply(p[:1], jnp.ones((3, 6)), jnp.ones((3, S))), r"params must be the list"),
])
def test_shape_mismatches_raise(call, match):
    fusion = layers.make_fusion("cp", (6, 4, 2), S, R)
    params = fusion.init(jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        call(fusion, params)
    with pytest.raises(ValueError, match=match):  # shapes are static: also under jit
        jax.jit(lambda p: call(fusion, p))(params)
