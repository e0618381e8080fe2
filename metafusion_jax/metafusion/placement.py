"""Where the stacked Meta Fusion program runs: one mesh, seeds over "runs", rho runs over "rhos",
members over "members".

Every device array of a stage leads with the seed axis S. On the mesh of `config.mesh`
(training/mesh.py, default (("runs", -1), ("members", 1))) the seed axis is split over "runs"
(the seeds never talk to each other: no communication); a stage's arrays [S, R, ...] (its
params, Adam state, `RunState`, weights and keys) split R over an optional "rhos" axis (the rho
runs never talk either: no communication), and M over "members" (the divergence needs every
member's outputs: XLA inserts one all-gather of F [M, B, C] per step). A stage whose R or M does
not divide its axis keeps that axis whole on those devices (correct, just not split): the
rho = 0 stage (R = 1) runs replicated over "rhos", the positive-rho stage splits.

A seed count S that does not divide the "runs" size is padded to S_pad (the next multiple) by
repeating the last seed; the padded seeds train like the last one and their results are dropped
on the way back to the host (`host`): every host record, and every checkpoint, holds the S real
seeds only, so a checkpoint restores onto any mesh. (Fewer seeds than the "runs" size of a -1
axis in one process: the mesh keeps only S of those devices instead, with a logged warning.)

The fake-CPU-device pitfall (long queues of collective programs abort, ../STACK.md) does not
arise: `program.run_stage` reads every chunk's losses back (its finiteness check) before it
dispatches the next, so at most a few programs are ever in flight.

Also here: JAX's persistent compilation cache (`use_compile_cache`, `config.compile_cache_dir`).

Host arrays (numpy or single-device) reach the mesh through `put`, which pads S and builds the
global array from each process's own shards (`jax.make_array_from_callback`), so the same code
runs on one device, on 8 fake CPU devices and across processes.

Letters: S seeds, R rho values, M members, E epochs.
"""
import functools
import os
from typing import Callable, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from metafusion_jax.metafusion.records import RunState
from metafusion_jax.training import mesh as mesh_lib
from metafusion_jax.training.xla_flags import one_shot_jit

RUNS, RHOS, MEMBERS = "runs", "rhos", "members"


class Placement(NamedTuple):
    """A mesh and the seed counts of one run.

    mesh: `jax.sharding.Mesh` with axis "runs" and optional "rhos", "members" (a missing axis
      counts as size 1).
    n_seeds: S real seeds; padded: S_pad >= S, a multiple of the "runs" size.
    """
    mesh: object
    n_seeds: int
    padded: int

    def axis(self, name: str) -> int:
        return int(dict(zip(self.mesh.axis_names, self.mesh.devices.shape)).get(name, 1))

    def sharding(self, ndim: int, member_dim=None, members=None, rhos=None) -> NamedSharding:
        """[S, ...] split over "runs" (dim `member_dim` of size `members` over "members"; with
        `rhos` = R, dim 1 over "rhos" where R divides it)."""
        spec = [None] * ndim
        if ndim and RUNS in self.mesh.axis_names:
            spec[0] = RUNS
        n = self.axis(MEMBERS)
        if member_dim is not None and n > 1 and members % n == 0:
            spec[member_dim] = MEMBERS
        n = self.axis(RHOS)
        if rhos is not None and ndim >= 2 and n > 1 and rhos % n == 0:
            spec[1] = RHOS
        return NamedSharding(self.mesh, P(*spec))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def leaf_sharding(self, leaf, member_dim=None, stage=False) -> NamedSharding:
        """A leaf [S_pad, ...] split over "runs" (`member_dim` over "members"; with `stage`, a
        stage leaf [S_pad, R, ...], dim 1 over "rhos"), any other leaf replicated."""
        if not leaf.shape or leaf.shape[0] != self.padded:
            return self.replicated
        members = leaf.shape[member_dim] if member_dim is not None and \
            leaf.ndim > member_dim else None
        rhos = leaf.shape[1] if stage and leaf.ndim >= 2 else None
        return self.sharding(leaf.ndim, member_dim if members else None, members, rhos)

    def tree_sharding(self, tree):
        """Shardings of a tree of (abstract) arrays [S_pad, ...]; a RunState (a stage's state,
        [S, R, ...]) splits R and M too."""
        if isinstance(tree, RunState):
            dims = RunState(2, 2, 2, 2, 2, 3, 3)   # M: [S, R, M, ...], curves [S, R, E, M]
            return RunState(*[jax.tree.map(lambda a, d=d: self.leaf_sharding(a, d, True), field)
                              for field, d in zip(tree, dims)])
        return jax.tree.map(self.leaf_sharding, tree)

    def put(self, tree):
        """Host (or device) arrays [S or S_pad, ...] -> global arrays [S_pad, ...] on the mesh.

        Leaves with S rows are padded by repeating the last seed; other leaves are replicated.
        PRNG key arrays are placed through their key data.
        """
        return jax.tree.map(lambda x: self._put_leaf(x, self.leaf_sharding), tree)

    def put_stage(self, tree, member_dim=None):
        """`put` for a stage's inputs [S, R, ...] (params and Adam state with `member_dim` = 2,
        weights [S, R, M], keys [S, R]): R also split over "rhos"; a RunState by
        `tree_sharding`."""
        if isinstance(tree, RunState):
            dims = RunState(2, 2, 2, 2, 2, 3, 3)   # as tree_sharding, after padding S
            return RunState(*[self.put_stage(field, d) for field, d in zip(tree, dims)])
        return jax.tree.map(
            lambda x: self._put_leaf(x, lambda a: self.leaf_sharding(a, member_dim, True)), tree)

    def _put_leaf(self, x, sharding_of):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(x)
            data = self._put_leaf(jax.random.key_data(x), sharding_of)
            return jax.random.wrap_key_data(data, impl=impl)
        if isinstance(x, jax.Array) and (jax.process_count() == 1 or
                                         not x.is_fully_addressable):
            if x.ndim and x.shape[0] == self.n_seeds < self.padded:
                x = jnp.concatenate([x, jnp.repeat(x[-1:], self.padded - self.n_seeds, 0)])
            return jax.device_put(x, sharding_of(x))
        x = np.asarray(x)
        if x.ndim and x.shape[0] == self.n_seeds < self.padded:
            x = np.concatenate([x, np.repeat(x[-1:], self.padded - self.n_seeds, axis=0)])
        sharding = sharding_of(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    def replicate(self, x):
        """A host array -> the same global array on every device (every process passes it)."""
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, self.replicated, lambda index: x[index])

    def init(self, init: Callable, keys):
        """`jax.vmap(init)(keys)` [S_pad, ...] created already sharded (keys [S] or [S_pad])."""
        keys = self.put(keys)
        return one_shot_jit(_constrained(self, jax.vmap(init)))(keys)

    def jit(self, fn: Callable) -> Callable:
        """`jax.jit(fn)` whose outputs are placed by `tree_sharding` (constraints inside its one
        trace; one cached wrapper per (placement, fn))."""
        return _out_jit(self, fn)

    def host(self, tree):
        """Device arrays [S_pad, ...] -> numpy [S, ...] (padded seeds dropped; every process)."""
        def fetch(x):
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                x = jax.device_put(x, self.replicated)   # an all-gather; then local
            x = np.asarray(x)
            return x[:self.n_seeds] if x.ndim and x.shape[0] == self.padded else x
        return jax.tree.map(fetch, tree)

    def real(self, tree):
        """Device arrays [S_pad, ...] -> [S, ...] device arrays (what a checkpoint saves)."""
        if self.padded == self.n_seeds:
            return tree
        cut = lambda x: x[:self.n_seeds] if x.ndim and x.shape[0] == self.padded else x
        return one_shot_jit(lambda t: jax.tree.map(cut, t),
                       out_shardings=self.replicated)(tree)

    def abstract(self, like):
        """Abstract tree [S, ...] (the checkpoint form of `like` [S_pad, ...]) with shardings of
        this mesh: split over "runs" where S divides it, else replicated."""
        def leaf(a):
            shape = tuple(a.shape)
            if shape and shape[0] == self.padded:
                shape = (self.n_seeds,) + shape[1:]
            split = bool(shape) and shape[0] % self.axis(RUNS) == 0
            sharding = self.sharding(len(shape)) if split else self.replicated
            return jax.ShapeDtypeStruct(shape, a.dtype, sharding=sharding)
        return jax.tree.map(leaf, like)


@functools.lru_cache(maxsize=256)
def _out_jit(place: Placement, fn):
    """`jax.jit` of fn whose outputs carry `tree_sharding` constraints (set inside the trace from
    the traced shapes: one trace per argument shapes; an `eval_shape` for `out_shardings` first
    traced every stage program twice, ~9 s of a setting-2.2 run)."""
    return jax.jit(_constrained(place, fn))


def _constrained(place: Placement, fn):
    """fn with its outputs constrained to `place.tree_sharding` of their traced shapes."""
    def placed(*args):
        out = fn(*args)
        return jax.tree.map(jax.lax.with_sharding_constraint, out, place.tree_sharding(out))
    return placed


def make_placement(mesh_spec, n_seeds: int, devices=None) -> Placement:
    """The mesh of `mesh_spec` (see training/mesh.py) and S padded to the "runs" size.

    Raises:
      ValueError: a malformed mesh spec, or one without a "runs" axis.
    """
    names = [p[0] for p in mesh_spec] if isinstance(mesh_spec, (tuple, list)) else []
    if RUNS not in names:
        raise ValueError(f"config.mesh = {mesh_spec!r} has no {RUNS!r} axis; Meta Fusion splits "
                         f"seeds over it, e.g. config.mesh = (('runs', -1), ('members', 1)).")
    devices = list(jax.devices() if devices is None else devices)
    mesh = mesh_lib.make_mesh(mesh_spec, devices)
    runs = int(dict(zip(mesh.axis_names, mesh.devices.shape))[RUNS])
    if n_seeds < runs and dict(mesh_spec)[RUNS] == -1 and jax.process_count() == 1:
        # Fewer seeds than devices: a padded copy per idle device would only cost time.
        keep = len(devices) // runs * int(n_seeds)
        logging.warning("%d seeds on a 'runs' axis of %d devices: using %d of the %d devices.",
                        n_seeds, runs, keep, len(devices))
        mesh, runs = mesh_lib.make_mesh(mesh_spec, devices[:keep]), int(n_seeds)
    return Placement(mesh, int(n_seeds), -(-int(n_seeds) // runs) * runs)


def single_device(n_seeds: int) -> Placement:
    """A one-device placement (the library default when no mesh is given)."""
    return make_placement(((RUNS, 1), (MEMBERS, 1)), n_seeds, jax.devices()[:1])


def compile_cache_dir(value: str) -> str:
    """The folder of `config.compile_cache_dir`: "" off, "auto" $XDG_CACHE_HOME/metafusion_jax/jax
    (default ~/.cache/metafusion_jax/jax), else the given path (~ expanded).

    Raises:
      ValueError: a value that is not a string.
    """
    if not isinstance(value, str):
        raise ValueError(f"config.compile_cache_dir must be a folder path, \"auto\" or \"\" "
                         f"(off), got {value!r}; e.g. --config.compile_cache_dir=/tmp/jax_cache.")
    if value != "auto":
        return os.path.expanduser(value) if value else ""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "metafusion_jax", "jax")


def use_compile_cache(value: str) -> str:
    """Turns JAX's persistent compilation cache on in `compile_cache_dir(value)` (every program,
    however quick to compile), unless it is "" or the process already set a cache folder.

    Returns:
      The folder in use ("" when off).
    """
    from jax.experimental.compilation_cache import compilation_cache
    current = jax.config.jax_compilation_cache_dir
    folder = compile_cache_dir(value)
    if current or not folder:
        return current or ""
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.reset_cache()
    return folder
