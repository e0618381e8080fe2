"""Tests for metammf/graph.py: edge layout, SAGE == dense-adjacency mean, LightGCN propagation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metammf import graph as graph_lib

U, I = 6, 5


def _pairs(seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.random((U, I)) < 0.4
    mask[0, :] = False  # user 0 isolated
    mask[1, 0] = True
    return np.argwhere(mask).astype(np.int32)


def _dense_adj(pairs):
    adj = np.zeros((U + I, U + I))
    for u, i in pairs:
        adj[u, U + i] = adj[U + i, u] = 1.0
    return adj


def test_bipartite_layout():
    pairs = _pairs()
    g = graph_lib.make_bipartite_graph(pairs, U, I)
    assert g.src.dtype == np.int32 and g.dst.dtype == np.int32 and len(g.src) == 2 * len(pairs)
    assert np.all(np.diff(g.dst) >= 0)
    assert np.all(g.src != g.dst)
    adj = _dense_adj(pairs)
    rebuilt = np.zeros_like(adj)
    rebuilt[g.src, g.dst] = 1.0
    np.testing.assert_array_equal(rebuilt, adj)
    deg = adj.sum(1)
    np.testing.assert_allclose(g.inv_deg, np.where(deg > 0, 1 / np.maximum(deg, 1), 0))
    assert g.inv_deg[0] == 0.0


def test_sage_equals_dense_mean():
    pairs = _pairs(1)
    g = jax.tree_util.tree_map(jnp.asarray, graph_lib.make_bipartite_graph(pairs, U, I))
    params = graph_lib.sage_init(jax.random.key(0), 4, 3)
    params["b_nbr"] = jnp.arange(3.0)
    x = np.random.default_rng(2).normal(size=(U + I, 4)).astype(np.float32)
    adj = _dense_adj(pairs)
    deg = adj.sum(1, keepdims=True)
    mean = np.where(deg > 0, adj @ x / np.maximum(deg, 1), 0.0)
    p = {k: np.asarray(v) for k, v in params.items()}
    ref = mean @ p["W_nbr"] + p["b_nbr"] + x @ p["W_self"]
    got = jax.jit(graph_lib.sage)(params, x, g)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_sym_propagate_equals_dense_normalised_adjacency():
    pairs = _pairs(3)
    g = graph_lib.make_bipartite_graph(pairs, U, I)
    adj = _dense_adj(pairs)
    deg = adj.sum(1)
    d = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0.0)
    x = np.random.default_rng(4).normal(size=(U + I, 3)).astype(np.float32)
    ref = (d[:, None] * adj * d[None, :]) @ x
    np.testing.assert_allclose(jax.jit(graph_lib.sym_propagate)(x, g), ref, rtol=1e-5, atol=1e-5)


def test_one_compile_for_two_graphs_of_same_size():
    traces = []

    @jax.jit
    def f(x, g):
        traces.append(1)
        return graph_lib.mean_neighbours(x, g)

    x = jnp.ones((U + I, 2))
    g1 = graph_lib.make_bipartite_graph(np.array([[0, 0], [1, 2]]), U, I)
    g2 = graph_lib.make_bipartite_graph(np.array([[3, 1], [4, 4]]), U, I)
    out1, out2 = f(x, g1), f(x, g2)
    assert len(traces) == 1
    assert float(out1[U + 2, 0]) == 1.0 and float(out2[U + 2, 0]) == 0.0


def test_bad_pairs_raise():
    with pytest.raises(ValueError, match="shape"):
        graph_lib.make_bipartite_graph(np.zeros((3,), np.int32), U, I)
    with pytest.raises(ValueError, match=rf"train_pairs: item ids must lie in \[0, {I}\)"):
        graph_lib.make_bipartite_graph(np.array([[0, I]]), U, I)
    with pytest.raises(ValueError, match="integer dtype"):
        graph_lib.make_bipartite_graph(np.array([[0.0, 1.0]]), U, I)
