"""Where MetaMMF's arrays live on the device mesh (issue 9): one `Placement` per run.

The mesh has one axis, "data" (config.mesh, default all devices). What is split over it:
  * the BPR batch [B] (every process feeds its own slice: `put_batch`);
  * the item axis of the fusion: the trainer constrains features [I, F] to rows over "data"
    inside the step (`constrain_rows`), so each device fuses I / n items with their own weights
    (XLA pads an uneven last shard inside the program);
  * the graph propagation: the graph's per-destination arrays are placed by
    `graph.graph_shardings` (rows of destination nodes over "data"); the neighbour gather
    reads the node features through the collectives XLA inserts;
  * row tables (user [U, H], item-id [I, H] and their Adam moments) whose row count divides the
    device count; everything else (fusion and meta-learner weights, GCN weights) is
    replicated, and its gradient is all-reduced by XLA.
Params and optimiser state are created already placed (`init_state`: eval_shape -> shardings ->
jit(init, out_shardings)). Host arrays go in with `jax.make_array_from_callback`, which works
for one process and for many (each process fills only its own devices).

On 1 device every sharding is trivial and the same code runs.
"""
from typing import Callable, NamedTuple

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from metafusion_jax.metammf import graph as graph_lib

__all__ = ["Placement", "make_placement", "init_state", "put_host", "input_shardings",
           "put_batch", "constrain_rows", "needs_periodic_sync", "SYNC_EVERY"]

# Fake CPU devices abort after ~30 queued collective programs (STACK.md): sync this often there.
SYNC_EVERY = 8


class Placement(NamedTuple):
    """mesh: the run's Mesh; axis: its data axis name; rows: NamedSharding P(axis);
    replicated: NamedSharding P(); n: devices on the axis."""
    mesh: jax.sharding.Mesh
    axis: str
    rows: NamedSharding
    replicated: NamedSharding
    n: int


def make_placement(mesh, axis="data"):
    """The `Placement` of a mesh with a `axis` axis.

    Raises:
        ValueError: if the mesh has no such axis.
    """
    if axis not in mesh.shape:
        raise ValueError(f"config.mesh must have a {axis!r} axis for MetaMMF (batch, items and "
                         f"graph rows are split over it), got axes {tuple(mesh.shape)}. Use e.g. "
                         f"config.mesh=(('{axis}', -1),).")
    return Placement(mesh, axis, NamedSharding(mesh, P(axis)), NamedSharding(mesh, P()),
                     int(mesh.shape[axis]))


def _leaf_sharding(shape, placement, row_counts):
    if len(shape) >= 1 and shape[0] in row_counts and shape[0] % placement.n == 0:
        return placement.rows
    return placement.replicated


def init_state(init_fn: Callable, key, placement, row_counts):
    """`init_fn(key)` jitted straight onto the mesh: row tables split, the rest replicated.

    Args:
        init_fn: key -> pytree (e.g. {"params": ..., "opt_state": ...}).
        key: a jax.random key.
        placement: from `make_placement`.
        row_counts: leading sizes that are row tables, e.g. {U, I}.

    Returns:
        (state, shardings): the placed pytree and its NamedSharding tree.
    """
    abstract = jax.eval_shape(init_fn, key)
    shardings = jax.tree.map(lambda s: _leaf_sharding(s.shape, placement, set(row_counts)),
                             abstract)
    return jax.jit(init_fn, out_shardings=shardings)(key), shardings


def put_host(tree, shardings):
    """Host (numpy) pytree -> global jax.Arrays with `shardings`, in one or many processes."""
    def put(value, sharding):
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])
    return jax.tree.map(put, tree, shardings)


def input_shardings(inputs, placement):
    """Shardings of the trainer's `inputs` dict: the graph by destination rows, features by
    item rows where the item count divides the devices, every other array replicated."""
    out = {}
    for name, value in inputs.items():
        if name == "graph":
            out[name] = graph_lib.graph_shardings(value, placement.mesh, axis=placement.axis)
        elif name == "features" and np.shape(value)[0] % placement.n == 0:
            out[name] = placement.rows
        else:
            out[name] = jax.tree.map(lambda _: placement.replicated, value)
    return out


def put_batch(batch, placement):
    """The global BPR batch (every process holds the same host rows [B]) -> arrays split over
    the data axis, each process feeding only its own slice
    (`jax.make_array_from_process_local_data`).

    Args:
        batch: dict of numpy arrays with leading size B (a multiple of the device count).
    """
    count, index = jax.process_count(), jax.process_index()

    def put(value):
        value = np.asarray(value)
        per = value.shape[0] // count
        local = value[index * per:(index + 1) * per]
        return jax.make_array_from_process_local_data(placement.rows, local, value.shape)
    return {k: put(v) for k, v in batch.items()}


def constrain_rows(x, placement):
    """Inside jit: split x's leading (item or node) axis over the data axis (uneven is fine)."""
    if placement.n == 1:
        return x
    return jax.lax.with_sharding_constraint(x, placement.rows)


def needs_periodic_sync(placement):
    """True where queued collective programs must be drained: >1 device on the CPU backend."""
    return placement.n > 1 and jax.default_backend() == "cpu"
