"""Tests for metammf/baselines.py: VBPR and LightGCN against direct dense/numpy formulas.

LATTICE, FREEDOM, MMGCN and the floors have test files of their own (their modules' names).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metammf import baselines
from metafusion_jax.metammf import graph as graph_lib
from reliability import bad_input


pytestmark = pytest.mark.usefixtures("fast_compile_module")

U, I, F = 8, 6, 7


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


def test_check_slices_and_sizes():
    assert baselines.check_slices(None, 5) == (("all", 0, 5),)
    assert baselines.check_slices([("v", 0, 2), ("t", 2, 5)], 5) == (("v", 0, 2), ("t", 2, 5))
    with bad_input("baselines: a modality slice outside the feature width",
                   match="0 <= start < stop <= feature_dim=5"):
        baselines.check_slices((("v", 0, 9),), 5)
    with bad_input("baselines: a size < 1", match="dim must be >= 1, got 0"):
        baselines.make_lightgcn(n_users=U, n_items=I, dim=0)
