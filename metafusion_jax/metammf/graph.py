"""The bipartite user-item train graph and the propagations over it (GraphSAGE mean, LightGCN).

Nodes 0..U-1 are users and U..U+I-1 items. Every train pair gives two directed edges
(user -> item and item -> user); there are no self loops. Edges are sorted by destination so that
`jax.ops.segment_sum(..., indices_are_sorted=True)` can be used; spec section 8.4 measured this
as the faster scatter on CPU. Graph arrays must be passed to jit as arguments: closed-over index
arrays cost XLA tens of seconds of constant folding per scatter (spec section 6.4).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.data.rec import interactions
from metafusion_jax.metammf.layers import dense_init


class Graph(NamedTuple):
    """Directed edge list of a graph with N nodes and E2 edges, sorted by `dst`.

    Attributes:
        src: int32 [E2] message source.
        dst: int32 [E2] message destination, non-decreasing.
        inv_deg: float32 [N] 1 / in-degree (0 for isolated nodes): the mean aggregation.
        norm: float32 [E2] 1 / sqrt(deg_src deg_dst): symmetric normalisation D^-1/2 A D^-1/2.
    """

    src: jax.Array
    dst: jax.Array
    inv_deg: jax.Array
    norm: jax.Array


def make_graph(src, dst, n_nodes):
    """Builds a `Graph` from directed edges (host numpy).

    Args:
        src: int [E2].
        dst: int [E2].
        n_nodes: N.

    Returns:
        Graph with numpy arrays (sorted by dst, then src).
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    order = np.lexsort((src, dst))
    src, dst = src[order], dst[order]
    deg = np.bincount(dst, minlength=n_nodes).astype(np.float64)
    inv_deg = np.where(deg > 0, 1.0 / np.maximum(deg, 1.0), 0.0)
    out_deg = np.bincount(src, minlength=n_nodes).astype(np.float64)
    norm = 1.0 / np.sqrt(np.maximum(out_deg[src], 1.0) * np.maximum(deg[dst], 1.0))
    return Graph(src.astype(np.int32), dst.astype(np.int32),
                 inv_deg.astype(np.float32), norm.astype(np.float32))


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


def mean_neighbours(x, graph):
    """Mean over each node's in-neighbours: [N, H] -> [N, H] (0 for isolated nodes)."""
    summed = jax.ops.segment_sum(x[graph.src], graph.dst, num_segments=x.shape[0],
                                 indices_are_sorted=True)
    return summed * graph.inv_deg[:, None]


def sym_propagate(x, graph):
    """One LightGCN propagation D^-1/2 A D^-1/2 x: [N, H] -> [N, H]."""
    msgs = x[graph.src] * graph.norm[:, None]
    return jax.ops.segment_sum(msgs, graph.dst, num_segments=x.shape[0],
                               indices_are_sorted=True)


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
