"""Tests for metammf/graph.py: edge and chunked layouts, SAGE == dense-adjacency mean, LightGCN
propagation, the custom VJP against the edge-list form and check_grads, sharded == unsharded."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metammf import graph as graph_lib
from reliability import bad_input

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


# ---- the chunked layout and its custom VJP against the simple edge-list form -------------------

def _random_directed(seed, n_nodes=13, n_edges=40):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_nodes, n_edges), rng.integers(0, n_nodes, n_edges), n_nodes


def _dense_directed(src, dst, n_nodes):
    adj = np.zeros((n_nodes, n_nodes))
    np.add.at(adj, (dst, src), 1.0)  # adj[d, s] counts the edges s -> d (duplicates add)
    return adj


@pytest.mark.parametrize("seed,width", [(0, 1), (1, 3), (2, 16)])
def test_adjacency_sum_equals_dense_directed(seed, width, fast_compile):
    src, dst, n = _random_directed(seed)
    g = jax.tree_util.tree_map(jnp.asarray, graph_lib.make_graph(src, dst, n, chunk_width=width))
    x = np.random.default_rng(seed + 10).normal(size=(n, 3)).astype(np.float32)
    adj = _dense_directed(src, dst, n)
    np.testing.assert_allclose(graph_lib.adjacency_sum(x, g), adj @ x, rtol=1e-5, atol=1e-5)
    cot = np.random.default_rng(seed + 20).normal(size=(n, 3)).astype(np.float32)
    _, vjp = jax.vjp(lambda v: graph_lib.adjacency_sum(v, g), jnp.asarray(x))
    np.testing.assert_allclose(vjp(jnp.asarray(cot))[0], adj.T @ cot, rtol=1e-5, atol=1e-5)


def test_layout_rows_padded_and_sorted():
    src, dst, n = _random_directed(3, n_nodes=9, n_edges=70)
    g = graph_lib.make_graph(src, dst, n, chunk_width=4)
    for nbr, rows in ((g.nbr, g.nbr_dst), (g.nbr_t, g.nbr_t_dst)):
        assert nbr.shape[0] % graph_lib.ROW_MULTIPLE == 0 and nbr.shape[1] == 4
        assert rows.shape == (nbr.shape[0],) and np.all(np.diff(rows) >= 0)
    real = g.nbr != n
    assert real.sum() == len(src) and g.nbr_t[g.nbr_t != n].size == len(src)
    # every (source, destination) pair of the edge list appears in the rows, as often
    got = sorted(zip(g.nbr[real], np.broadcast_to(g.nbr_dst[:, None], g.nbr.shape)[real]))
    assert got == sorted(zip(src.tolist(), dst.tolist()))


@pytest.mark.parametrize("fn,ref", [
    (graph_lib.mean_neighbours, graph_lib.edge_mean_neighbours),
    (graph_lib.sym_propagate, graph_lib.edge_sym_propagate),
])
def test_fast_equals_edge_list_values_and_grads(fn, ref, fast_compile):
    pairs = _pairs(5)
    g = jax.tree_util.tree_map(jnp.asarray, graph_lib.make_bipartite_graph(pairs, U, I))
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(U + I, 4)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(U + I, 4)).astype(np.float32))
    np.testing.assert_allclose(jax.jit(fn)(x, g), ref(x, g), rtol=1e-5, atol=1e-6)
    loss = lambda f: jax.grad(lambda v: jnp.sum(jnp.tanh(f(v, g)) * w))(x)  # noqa: E731
    np.testing.assert_allclose(jax.jit(lambda: loss(fn))(), loss(ref), rtol=1e-5, atol=1e-6)


def test_custom_vjp_check_grads(fast_compile):
    from jax.test_util import check_grads
    src, dst, n = _random_directed(7, n_nodes=10, n_edges=35)
    with jax.enable_x64(True):
        g = graph_lib.make_graph(src, dst, n, chunk_width=3)
        g = g._replace(inv_deg=g.inv_deg.astype(np.float64), in_rsqrt=g.in_rsqrt.astype(np.float64),
                       out_rsqrt=g.out_rsqrt.astype(np.float64))
        g = jax.tree_util.tree_map(jnp.asarray, g)
        x = jnp.asarray(np.random.default_rng(8).normal(size=(n, 2)))
        for fn in (graph_lib.adjacency_sum, graph_lib.mean_neighbours, graph_lib.sym_propagate):
            check_grads(lambda v: fn(v, g), (x,), order=2, modes=("rev",), atol=1e-7, rtol=1e-7)


def test_isolated_empty_and_hub(fast_compile):
    # Node 0 is isolated; node 1 is a hub with 300 in-edges (many rows); the rest are sparse.
    rng = np.random.default_rng(9)
    n = 12
    src = np.concatenate([rng.integers(2, n, 300), [3, 4, 5]])
    dst = np.concatenate([np.ones(300, int), [6, 6, 7]])
    g = jax.tree_util.tree_map(jnp.asarray, graph_lib.make_graph(src, dst, n))
    x = jnp.asarray(rng.normal(size=(n, 3)).astype(np.float32))
    out = graph_lib.mean_neighbours(x, g)
    np.testing.assert_allclose(out[1], np.asarray(x)[src[:300]].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[6], (x[3] + x[4]) / 2, rtol=1e-6)
    assert float(jnp.abs(out[0]).max()) == 0.0 and float(g.inv_deg[0]) == 0.0
    grad = jax.grad(lambda v: graph_lib.mean_neighbours(v, g)[1].sum())(x)
    np.testing.assert_allclose(grad, np.bincount(src[:300], minlength=n)[:, None] / 300
                               * np.ones((1, 3)), rtol=1e-5, atol=1e-7)
    empty = jax.tree_util.tree_map(jnp.asarray, graph_lib.make_bipartite_graph(
        np.zeros((0, 2), np.int32), U, I))
    assert empty.src.shape == (0,) and empty.nbr.shape[0] == graph_lib.ROW_MULTIPLE
    z = jnp.ones((U + I, 2))
    assert float(jnp.abs(graph_lib.mean_neighbours(z, empty)).max()) == 0.0
    assert float(jnp.abs(graph_lib.sym_propagate(z, empty)).max()) == 0.0
    assert float(jnp.abs(jax.grad(lambda v: graph_lib.sage(
        graph_lib.sage_init(jax.random.key(0), 2, 2), v, empty).sum())(z)).max()) > 0.0


def test_sharded_aggregation_equals_unsharded(fast_compile):
    from jax.sharding import NamedSharding, PartitionSpec
    pairs = _pairs(11)
    host = graph_lib.make_bipartite_graph(pairs, U, I)
    g = jax.tree_util.tree_map(jnp.asarray, host)
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.normal(size=(U + I, 4)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(U + I, 4)).astype(np.float32))

    def f(v, graph):
        return jnp.sum(graph_lib.sym_propagate(graph_lib.mean_neighbours(v, graph), graph) * w)

    want_val, want_grad = jax.value_and_grad(f)(x, g)
    for n_dev in (2, 8):
        mesh = jax.make_mesh((n_dev,), ("data",), devices=jax.devices()[:n_dev],
                             axis_types=(jax.sharding.AxisType.Auto,))
        shardings = graph_lib.graph_shardings(host, mesh)
        assert shardings.nbr.spec == PartitionSpec("data")
        assert shardings.inv_deg.spec == PartitionSpec()
        placed = jax.device_put(host, shardings)
        assert len(placed.nbr.addressable_shards) == n_dev
        x_rep = jax.device_put(x, NamedSharding(mesh, PartitionSpec()))
        val, grad = jax.jit(jax.value_and_grad(f))(x_rep, placed)
        np.testing.assert_allclose(val, want_val, rtol=1e-5)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-6)


def test_bad_graph_inputs():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    g = graph_lib.make_graph([0, 1], [1, 0], 2)
    with bad_input("make_graph: src and dst of different lengths",
                   match="src and dst must have the same length, got 2 and 1"):
        graph_lib.make_graph([0, 1], [1], 2)
    with bad_input("make_graph: a node id >= n_nodes",
                   match=r"node ids must lie in \[0, n_nodes=2\), got range \[0, 2\]"):
        graph_lib.make_graph([0, 2], [1, 0], 2)
    with bad_input("make_graph: chunk_width of 0",
                   match="chunk_width must be a positive int, got 0"):
        graph_lib.make_graph([0, 1], [1, 0], 2, chunk_width=0)
    with bad_input("graph_shardings: a mesh without the named axis",
                   match=r"the mesh has no axis 'rows' \(its axes: \('data',\)\)"):
        graph_lib.graph_shardings(g, mesh, axis="rows")
    with bad_input("graph_shardings: row count not divisible by the mesh axis",
                   match="graph.nbr has 60 rows, not a multiple of the mesh axis 'data' of size 8"):
        graph_lib.graph_shardings(g._replace(nbr=g.nbr[:60]), mesh)
