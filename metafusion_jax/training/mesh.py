"""One device mesh from `config.mesh`, and multi-host start-up, for both trainers.

`config.mesh` is big_vision style: a tuple of (axis name, size) pairs; a size of -1 takes all
remaining devices (at most one -1). The default of each trainer uses every visible device, so
one command runs unchanged on 1 CPU, 8 fake CPU devices, a TPU v2-8 / v5e-8 runtime or a
multi-GPU host (fixed sizes whose product is below the device count use the first devices):

    MetaMMF:      (("data", -1),)                   batch, items and graph rows over all devices
    Meta Fusion:  (("runs", -1), ("members", 1))    seeds x rho runs over all devices

Axis types are Auto: the trainers place data with `NamedSharding` and jit, XLA inserts the
collectives (no `jax.set_mesh` needed for eager ops).

Multi-host: `initialize_distributed(coordinator_address, num_processes, process_id)` calls
`jax.distributed.initialize` once before any other jax call, from explicit values (the
binaries' --coordinator_address / --num_processes / --process_id flags) or else from the
environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID. On a Cloud
TPU pod or a SLURM cluster `jax.distributed.initialize()` needs no values: set
JAX_DISTRIBUTED_AUTO=1. Only process 0 writes logs and results (`is_writer`).
"""
import math
import os

import jax
import numpy as np

__all__ = ["make_mesh", "mesh_spec_error", "axis_size", "initialize_distributed", "is_writer",
           "ENV_COORDINATOR", "ENV_NUM_PROCESSES", "ENV_PROCESS_ID", "ENV_AUTO"]

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_AUTO = "JAX_DISTRIBUTED_AUTO"


def mesh_spec_error(spec, n_devices):
    """The message of what is wrong with mesh spec `spec` for `n_devices` devices, or None."""
    hint = ("config.mesh is a tuple of (axis name, size) pairs, -1 = all remaining devices, "
            f"e.g. ((\"data\", -1),); {n_devices} devices are visible.")
    try:
        pairs = [tuple(p) for p in spec]
    except TypeError:
        return f"config.mesh must be a tuple of (name, size) pairs, got {spec!r}. {hint}"
    if not pairs:
        return f"config.mesh is empty. {hint}"
    names = []
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not pair[0]:
            return f"config.mesh entry {pair!r} is not an (axis name, size) pair. {hint}"
        if not isinstance(pair[1], (int, np.integer)) or isinstance(pair[1], bool) or \
                (pair[1] < 1 and pair[1] != -1):
            return f"config.mesh axis {pair[0]!r} has size {pair[1]!r}: use an int >= 1 or -1. " \
                   + hint
        names.append(pair[0])
    if len(set(names)) != len(names):
        return f"config.mesh repeats an axis name: {names}. {hint}"
    sizes = [int(p[1]) for p in pairs]
    if sizes.count(-1) > 1:
        return f"config.mesh has more than one -1 size: {pairs}. {hint}"
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes and n_devices % fixed:
        return (f"config.mesh {pairs} needs a multiple of {fixed} devices, but {n_devices} are "
                f"visible. {hint}")
    if -1 not in sizes and fixed > n_devices:
        return (f"config.mesh {pairs} needs {fixed} devices, but {n_devices} are visible: use -1 "
                f"for one axis, or sizes whose product is at most {n_devices}. {hint}")
    return None


def axis_size(spec, name, n_devices):
    """Size of axis `name` of a valid spec on `n_devices` devices (1 if the axis is absent)."""
    sizes = {str(p[0]): int(p[1]) for p in spec}
    if name not in sizes:
        return 1
    if sizes[name] != -1:
        return sizes[name]
    return n_devices // math.prod(s for s in sizes.values() if s != -1)


def make_mesh(spec, devices=None):
    """A `jax.sharding.Mesh` of Auto axes from a (name, size) spec (-1 = remaining devices).

    Args:
        spec: e.g. (("data", -1),) or (("runs", 4), ("members", 2)).
        devices: defaults to `jax.devices()` (all processes' devices).

    Returns:
        Mesh over all devices, or over the first prod(sizes) devices when no size is -1
        (e.g. (("data", 1),) runs on one device of eight).

    Raises:
        ValueError: on a malformed spec or sizes that do not fit the devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    error = mesh_spec_error(spec, len(devices))
    if error:
        raise ValueError(error)
    names = tuple(str(p[0]) for p in spec)
    sizes = [int(p[1]) for p in spec]
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        sizes = tuple(len(devices) // fixed if s == -1 else s for s in sizes)
    else:
        devices = devices[:fixed]
    return jax.make_mesh(sizes, names, axis_types=(jax.sharding.AxisType.Auto,) * len(names),
                         devices=devices)


def initialize_distributed(coordinator_address="", num_processes=0, process_id=-1):
    """Starts `jax.distributed` for a multi-process run; a no-op for a single process.

    Explicit arguments win over the environment (ENV_COORDINATOR, ENV_NUM_PROCESSES,
    ENV_PROCESS_ID); ENV_AUTO=1 calls `jax.distributed.initialize()` without values (Cloud TPU,
    SLURM). Must run before any other jax call.

    Returns:
        True if jax.distributed was initialised.

    Raises:
        ValueError: on a partial or inconsistent set of values (names what is missing).
    """
    if os.environ.get(ENV_AUTO) == "1" and not coordinator_address:
        jax.distributed.initialize()
        return True
    address = coordinator_address or os.environ.get(ENV_COORDINATOR, "")
    count = int(num_processes or os.environ.get(ENV_NUM_PROCESSES, "0") or 0)
    pid = int(process_id if process_id >= 0 else os.environ.get(ENV_PROCESS_ID, "-1") or -1)
    if not address and count <= 1:
        return False
    if not address or count < 2 or not 0 <= pid < count:
        raise ValueError(
            f"a multi-process run needs a coordinator address, a process count >= 2 and a process "
            f"id in [0, count); got address={address!r}, num_processes={count}, process_id={pid}. "
            f"Pass --coordinator_address=HOST:PORT --num_processes=N --process_id=I (or set "
            f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}) on every process.")
    jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=pid)
    return True


def is_writer():
    """True on the process that writes logs, figures and results.json (process 0)."""
    return jax.process_index() == 0
