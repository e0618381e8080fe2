"""The bipartite user-item train graph and the propagations over it (GraphSAGE mean, LightGCN).

Nodes 0..U-1 are users and U..U+I-1 items. Every train pair gives two directed edges
(user -> item and item -> user); there are no self loops. Graph arrays must be passed to jit as
arguments: closed-over index arrays cost XLA tens of seconds of constant folding (spec 6.4).

Layout of the aggregation (why it is fast on CPU). XLA's CPU gather is slow when it materialises
an [E2, H] array of messages (fresh buffers are page-faulted at ~4 GB/s) and its scatter-add is a
serial loop. So each destination's in-neighbour list is cut into rows of `CHUNK_WIDTH` source ids,
padded with the index N (a zero row appended to x): `nbr` [R, W]. One aggregation is then
    partial[r] = sum_j x[nbr[r, j]]              (W row gathers fused into one loop, [R, H])
    out[n]     = sum_{r: nbr_dst[r] = n} partial[r]   (a sorted segment sum over R ~ E2 / W rows)
and never builds an [E2, H] array. The gradient of A x is A^T g, the same aggregation over the
transposed layout (`nbr_t`, by source), through a `jax.custom_vjp`: no unsorted scatter-add.

Sharding (issue 9). `nbr`/`nbr_dst` (and the transposed pair) lead with rows in destination order,
padded to a multiple of ROW_MULTIPLE rows, so any device count in {1, 2, 4, 8} divides them:
`graph_shardings` places them with P(axis) and the node features replicated, which splits the
gathers by destination; XLA inserts the reduction of the segment sum across devices.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from metafusion_jax.data.rec import interactions
from metafusion_jax.metammf.layers import dense_init

CHUNK_WIDTH = 16   # W: source ids per row (measured best of 4..64 at MovieLens size, 1 core)
ROW_MULTIPLE = 64  # R is padded to a multiple of this (divisible by 1, 2, 4 and 8 devices)


class Graph(NamedTuple):
    """A directed graph with N nodes and E2 edges, as an edge list and as chunked neighbour rows.

    Attributes:
        src: int32 [E2] message source (edges sorted by dst, then src).
        dst: int32 [E2] message destination, non-decreasing.
        inv_deg: float32 [N] 1 / in-degree (0 for isolated nodes): the mean aggregation.
        norm: float32 [E2] 1 / sqrt(deg_src deg_dst): symmetric normalisation D^-1/2 A D^-1/2.
        nbr: int32 [R, W] in-neighbour ids of each row's destination; N pads (a zero row).
        nbr_dst: int32 [R] destination of each row, non-decreasing (padding rows: N - 1).
        nbr_t: int32 [R', W] the same for the transposed graph (out-neighbours, by source).
        nbr_t_dst: int32 [R'] source node of each row of nbr_t, non-decreasing.
        in_rsqrt: float32 [N] 1 / sqrt(max(in-degree, 1)).
        out_rsqrt: float32 [N] 1 / sqrt(max(out-degree, 1)); norm = out_rsqrt[src] in_rsqrt[dst].
    """

    src: jax.Array
    dst: jax.Array
    inv_deg: jax.Array
    norm: jax.Array
    nbr: jax.Array
    nbr_dst: jax.Array
    nbr_t: jax.Array
    nbr_t_dst: jax.Array
    in_rsqrt: jax.Array
    out_rsqrt: jax.Array


def _chunk_rows(src, dst, n_nodes, width):
    """(nbr [R, W], nbr_dst [R]) for edges sorted by dst; R padded to a multiple of ROW_MULTIPLE."""
    deg = np.bincount(dst, minlength=n_nodes)
    n_rows = -(-deg // width)
    row_start = np.concatenate([[0], np.cumsum(n_rows)[:-1]]).astype(np.int64)
    edge_start = np.concatenate([[0], np.cumsum(deg)[:-1]]).astype(np.int64)
    total = int(n_rows.sum())
    padded = max(ROW_MULTIPLE, -(-total // ROW_MULTIPLE) * ROW_MULTIPLE)
    nbr = np.full((padded, width), n_nodes, np.int32)
    rank = np.arange(len(src)) - edge_start[dst]
    nbr[row_start[dst] + rank // width, rank % width] = src
    nbr_dst = np.full((padded,), max(n_nodes - 1, 0), np.int32)
    nbr_dst[:total] = np.repeat(np.arange(n_nodes), n_rows)
    return nbr, nbr_dst


def make_graph(src, dst, n_nodes, chunk_width=CHUNK_WIDTH):
    """Builds a `Graph` from directed edges (host numpy).

    Args:
        src: int [E2].
        dst: int [E2].
        n_nodes: N.
        chunk_width: W, source ids per row of `nbr` (a speed knob; results do not depend on it).

    Returns:
        Graph with numpy arrays (edges sorted by dst, then src).

    Raises:
        ValueError: if src and dst differ in length, hold ids outside [0, N), or chunk_width < 1.
    """
    src = np.asarray(src, dtype=np.int64).reshape(-1)
    dst = np.asarray(dst, dtype=np.int64).reshape(-1)
    if src.shape != dst.shape:
        raise ValueError(f"make_graph: src and dst must have the same length, got {src.shape[0]} "
                         f"and {dst.shape[0]}. Pass one (src, dst) pair per directed edge.")
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n_nodes):
        raise ValueError(
            f"make_graph: node ids must lie in [0, n_nodes={n_nodes}), got range "
            f"[{min(src.min(), dst.min())}, {max(src.max(), dst.max())}]. Raise n_nodes or "
            "renumber the nodes.")
    if not isinstance(chunk_width, (int, np.integer)) or chunk_width < 1:
        raise ValueError(f"make_graph: chunk_width must be a positive int, got {chunk_width!r}.")
    order = np.lexsort((src, dst))
    src, dst = src[order], dst[order]
    deg = np.bincount(dst, minlength=n_nodes).astype(np.float64)
    inv_deg = np.where(deg > 0, 1.0 / np.maximum(deg, 1.0), 0.0)
    out_deg = np.bincount(src, minlength=n_nodes).astype(np.float64)
    in_rsqrt = 1.0 / np.sqrt(np.maximum(deg, 1.0))
    out_rsqrt = 1.0 / np.sqrt(np.maximum(out_deg, 1.0))
    norm = 1.0 / np.sqrt(np.maximum(out_deg[src], 1.0) * np.maximum(deg[dst], 1.0))
    nbr, nbr_dst = _chunk_rows(src, dst, n_nodes, int(chunk_width))
    order_t = np.lexsort((dst, src))
    nbr_t, nbr_t_dst = _chunk_rows(dst[order_t], src[order_t], n_nodes, int(chunk_width))
    return Graph(src.astype(np.int32), dst.astype(np.int32), inv_deg.astype(np.float32),
                 norm.astype(np.float32), nbr, nbr_dst, nbr_t, nbr_t_dst,
                 in_rsqrt.astype(np.float32), out_rsqrt.astype(np.float32))


def make_bipartite_graph(train_pairs, n_users, n_items):
    """The train interactions as an undirected bipartite graph over U + I nodes.

    Args:
        train_pairs: int [E, 2] (user, item), 0-based, unique.
        n_users: U.
        n_items: I.

    Returns:
        Graph with N = U + I nodes and E2 = 2E edges (numpy arrays; put them on device once).

    Raises:
        ValueError: if the pairs are not [E, 2] or hold ids outside [0, U) x [0, I).
    """
    pairs = interactions.check_pairs(train_pairs, name="train_pairs", n_users=n_users,
                                     n_items=n_items, allow_empty=True,
                                     hint="Check n_users / n_items.")
    users = pairs[:, 0].astype(np.int64)
    items = pairs[:, 1].astype(np.int64) + n_users
    return make_graph(np.concatenate([users, items]), np.concatenate([items, users]),
                      n_users + n_items)


def graph_shardings(graph, mesh, axis="data"):
    """NamedShardings for a Graph on `mesh`: the neighbour rows split over `axis`, the rest
    replicated. Use them as jit in_shardings or with `jax.device_put(graph, shardings)`.

    Args:
        graph: a Graph (numpy or jax arrays).
        mesh: a jax.sharding.Mesh with an axis named `axis`.
        axis: the mesh axis that splits the rows (destinations) of the aggregation.

    Returns:
        Graph of NamedShardings.

    Raises:
        ValueError: if the mesh has no axis `axis`, or its size does not divide the row counts.
    """
    if axis not in mesh.shape:
        raise ValueError(f"graph_shardings: the mesh has no axis {axis!r} (its axes: "
                         f"{tuple(mesh.shape)}). Pass axis= one of them.")
    size = mesh.shape[axis]
    for name in ("nbr", "nbr_t"):
        rows = np.shape(getattr(graph, name))[0]
        if rows % size:
            raise ValueError(
                f"graph_shardings: graph.{name} has {rows} rows, not a multiple of the mesh axis "
                f"{axis!r} of size {size}. Build the graph with make_graph (rows are padded to a "
                f"multiple of {ROW_MULTIPLE}) or use a mesh axis that divides {ROW_MULTIPLE}.")
    rows, replicated = NamedSharding(mesh, PartitionSpec(axis)), NamedSharding(mesh, PartitionSpec())
    by_rows = {"nbr", "nbr_dst", "nbr_t", "nbr_t_dst"}
    return Graph(*(rows if name in by_rows else replicated for name in Graph._fields))


def _gather_sum(x, nbr, nbr_dst):
    """sum over each node's rows of sum_j x[nbr[r, j]]: [N, H] -> [N, H] (index N reads 0)."""
    padded = jnp.concatenate([x, jnp.zeros((1,) + x.shape[1:], x.dtype)], axis=0)
    partial = padded.at[nbr[:, 0]].get(mode="promise_in_bounds")
    for j in range(1, nbr.shape[1]):  # W gathers of [R, H] rows, fused by XLA into one loop
        partial = partial + padded.at[nbr[:, j]].get(mode="promise_in_bounds")
    return jax.ops.segment_sum(partial, nbr_dst, num_segments=x.shape[0], indices_are_sorted=True)


@jax.custom_vjp
def _adjacency_sum(x, nbr, nbr_dst, nbr_t, nbr_t_dst):
    """A x with A[d, s] = 1 per edge s -> d: [N, H] -> [N, H]; its VJP is A^T g."""
    return _gather_sum(x, nbr, nbr_dst)


def _adjacency_sum_fwd(x, nbr, nbr_dst, nbr_t, nbr_t_dst):
    return _gather_sum(x, nbr, nbr_dst), (nbr, nbr_dst, nbr_t, nbr_t_dst)


def _adjacency_sum_bwd(residuals, g):
    _, _, nbr_t, nbr_t_dst = residuals
    return _gather_sum(g, nbr_t, nbr_t_dst), None, None, None, None


_adjacency_sum.defvjp(_adjacency_sum_fwd, _adjacency_sum_bwd)


def adjacency_sum(x, graph):
    """Sum over each node's in-neighbours, A x: [N, H] -> [N, H] (0 for isolated nodes)."""
    return _adjacency_sum(x, graph.nbr, graph.nbr_dst, graph.nbr_t, graph.nbr_t_dst)


def mean_neighbours(x, graph):
    """Mean over each node's in-neighbours: [N, H] -> [N, H] (0 for isolated nodes)."""
    return adjacency_sum(x, graph) * graph.inv_deg[:, None]


def sym_propagate(x, graph):
    """One LightGCN propagation D^-1/2 A D^-1/2 x: [N, H] -> [N, H]."""
    return adjacency_sum(x * graph.out_rsqrt[:, None], graph) * graph.in_rsqrt[:, None]


def edge_mean_neighbours(x, graph):
    """`mean_neighbours` as a gather + segment sum over the edge list (autodiff backward: an
    unsorted scatter-add). The simple form: the tests' reference and the benchmarks' baseline."""
    summed = jax.ops.segment_sum(x[graph.src], graph.dst, num_segments=x.shape[0],
                                 indices_are_sorted=True)
    return summed * graph.inv_deg[:, None]


def edge_sym_propagate(x, graph):
    """`sym_propagate` over the edge list with per-edge `norm` (reference, as above)."""
    msgs = x[graph.src] * graph.norm[:, None]
    return jax.ops.segment_sum(msgs, graph.dst, num_segments=x.shape[0], indices_are_sorted=True)


def sage_init(key, d_in, d_out):
    """Params of one GraphSAGE layer (PyG SAGEConv, mean): Xavier weights, zero bias."""
    k_nbr, k_self = jax.random.split(key)
    return {
        "W_nbr": dense_init(k_nbr, d_in, d_out),
        "b_nbr": jnp.zeros((d_out,), jnp.float32),
        "W_self": dense_init(k_self, d_in, d_out),
    }


def sage(params, x, graph):
    """GraphSAGE mean layer: mean_nbr(x) W_nbr + b_nbr + x W_self (spec section 2.2 item 5).

    Args:
        params: from `sage_init`.
        x: float32 [N, H].
        graph: Graph over the N nodes.

    Returns:
        float32 [N, H_out].
    """
    agg = mean_neighbours(x, graph)
    return agg @ params["W_nbr"] + params["b_nbr"][None, :] + x @ params["W_self"]
