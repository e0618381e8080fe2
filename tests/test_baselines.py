"""Tests for metammf/baselines.py: each baseline against a direct dense/numpy formulation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metammf import baselines
from metafusion_jax.metammf import graph as graph_lib


pytestmark = pytest.mark.usefixtures("fast_compile_module")

U, I, F = 8, 6, 7
SLICES = (("v", 0, 4), ("t", 4, 7))


def _data(seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.random((U, I)) < 0.4
    mask[np.arange(U), np.arange(U) % I] = True
    pairs = np.argwhere(mask).astype(np.int32)
    adj = np.zeros((U + I, U + I))
    adj[pairs[:, 0], U + pairs[:, 1]] = adj[U + pairs[:, 1], pairs[:, 0]] = 1.0
    graph = jax.tree_util.tree_map(jnp.asarray, graph_lib.make_bipartite_graph(pairs, U, I))
    feats = rng.normal(size=(I, F)).astype(np.float32)
    return {"features": jnp.asarray(feats), "graph": graph}, adj


def _sym(adj):
    deg = adj.sum(1)
    d = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0)
    return d[:, None] * adj * d[None, :]


def test_vbpr_scores_match_formula():
    model = baselines.make_vbpr(n_users=U, n_items=I, feature_dim=F, id_dim=3, content_dim=2)
    params = model.init(jax.random.key(0))
    params["beta_item"] = jnp.arange(I, dtype=jnp.float32)[:, None]
    inputs, _ = _data()
    users, items = jax.jit(model.embed, static_argnums=3)(params, inputs, jax.random.key(0), True)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    f = np.asarray(inputs["features"], np.float64)
    for u in range(U):
        for i in range(I):
            ref = (p["gamma_user"][u] @ p["gamma_item"][i] + p["theta_user"][u] @ (f[i] @ p["E"])
                   + p["beta_item"][i, 0] + f[i] @ p["beta_content"][:, 0])
            np.testing.assert_allclose(float(users[u] @ items[i]), ref, rtol=1e-4, atol=1e-4)


def test_lightgcn_equals_dense_propagation():
    model = baselines.make_lightgcn(n_users=U, n_items=I, feature_dim=F, dim=4, n_layers=3)
    params = model.init(jax.random.key(0))
    inputs, adj = _data(1)
    users, items = jax.jit(model.embed, static_argnums=3)(params, inputs, jax.random.key(0), True)
    a = _sym(adj)
    e = np.asarray(params["emb"], np.float64)
    ref = (e + a @ e + a @ a @ e + a @ a @ a @ e) / 4
    np.testing.assert_allclose(np.concatenate([users, items]), ref, rtol=1e-4, atol=1e-5)


def _numpy_knn(block, k):
    unit = block / np.linalg.norm(block, axis=1, keepdims=True)
    sim = unit @ unit.T
    dense = np.zeros_like(sim)
    for i in range(len(sim)):
        top = np.argsort(-sim[i])[:k]
        dense[i, top] = np.maximum(sim[i, top], 0)
    deg = dense.sum(1)
    d = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-12)), 0)
    return d[:, None] * dense * d[None, :]


def test_lattice_knn_matches_numpy_and_chunking():
    inputs, _ = _data(2)
    feats = np.asarray(inputs["features"])
    knn = baselines.lattice_knn(feats, SLICES, k=3, chunk=4)   # chunk < I: two blocks
    assert knn["knn_idx"].shape == (2, I, 3) and knn["knn_w"].shape == (2, I, 3)
    for m, (_, a, b) in enumerate(SLICES):
        dense = np.zeros((I, I))
        np.add.at(dense, (np.repeat(np.arange(I), 3), knn["knn_idx"][m].ravel()),
                  knn["knn_w"][m].ravel())
        np.testing.assert_allclose(dense, _numpy_knn(feats[:, a:b].astype(np.float64), 3),
                                   rtol=1e-4, atol=1e-5)


def test_lattice_embed_matches_dense_formula_and_fallback():
    model = baselines.make_lattice(n_users=U, n_items=I, feature_dim=F, modality_slices=SLICES,
                                   dim=4, n_layers=2, n_item_layers=1, knn_k=3)
    params = model.init(jax.random.key(0))
    params["modality_logits"] = jnp.array([0.3, -0.2])
    inputs, adj = _data(3)
    feats = np.asarray(inputs["features"], np.float64)
    pre = {**inputs, **baselines.lattice_knn(feats, SLICES, k=3)}
    prepared = model.prepare_inputs(feats, SLICES, inputs["graph"])  # knn_k=3 from the factory
    assert set(prepared) == {"knn_idx", "knn_w"}
    for name, value in prepared.items():
        np.testing.assert_array_equal(value, pre[name])
    embed = jax.jit(model.embed, static_argnums=3)
    users, items = embed(params, pre, jax.random.key(0), True)
    _, items_fallback = embed(params, inputs, jax.random.key(0), True)
    np.testing.assert_allclose(items, items_fallback, rtol=1e-5, atol=1e-6)
    a = _sym(adj)
    e = np.asarray(params["emb"], np.float64)
    lg = (e + a @ e + a @ a @ e) / 3
    w = np.exp([0.3, -0.2]) / np.exp([0.3, -0.2]).sum()
    s = sum(w[m] * _numpy_knn(feats[:, a0:b0], 3) for m, (_, a0, b0) in enumerate(SLICES))
    h = s @ e[U:]
    h = h / np.linalg.norm(h, axis=1, keepdims=True)
    np.testing.assert_allclose(users, lg[:U], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items, lg[U:] + h, rtol=1e-4, atol=1e-4)


def test_mmgcn_uses_every_modality_and_trains():
    model = baselines.make_mmgcn(n_users=U, n_items=I, feature_dim=F, modality_slices=SLICES,
                                 dim=5, n_layers=2)
    params = model.init(jax.random.key(0))
    assert set(params["modalities"]) == {"v", "t"}
    inputs, _ = _data(4)
    embed = jax.jit(model.embed, static_argnums=3)
    users, items = embed(params, inputs, jax.random.key(0), True)
    assert users.shape == (U, 5) and items.shape == (I, 5)
    for _, a, b in SLICES:
        changed = dict(inputs, features=inputs["features"].at[:, a:b].add(1.0))
        assert not np.allclose(embed(params, changed, jax.random.key(0), True)[1], items)

    def score(p):
        u, i = model.embed(p, inputs, jax.random.key(0), True)
        return jnp.sum(u[:3] * i[:3])

    grads = jax.jit(jax.grad(score))(params)
    for name in ("v", "t"):
        assert float(jnp.abs(grads["modalities"][name]["proj"]).max()) > 0
        assert float(jnp.abs(grads["modalities"][name]["user_pref"]).max()) > 0


def test_bad_slices_raise():
    with pytest.raises(ValueError, match="modality_slices"):
        baselines.make_mmgcn(n_users=U, n_items=I, feature_dim=F, modality_slices=(("v", 0, 9),))
