"""XLA flags the binaries set before JAX creates its backend (importing jax is fine).

On CPU, XLA 0.10's YNNPACK fusion takes over batched `dot_general`s whose batch axis leads, which
is what `jax.vmap` over a stacked member axis produces: a [M, B, D] @ [M, D, H] cohort layer
runs at ~25 GFLOP/s there, against ~60 GFLOP/s through XLA's own dot emitter on a 2-core EPYC
(`benchmarks/bench_xla_flags.py` measures both side by side). The flag below turns
that fusion off; it is a CPU debug option, parsed (and ignored) on GPU/TPU backends too.
XLA aborts on flags it does not know, so the flag is tied to the pinned jax/jaxlib (setup.py).
"""
import os
from typing import MutableMapping, Optional

# name -> value; appended to XLA_FLAGS unless the user already set that flag.
CPU_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": ""}


def apply_cpu_flags(environ: Optional[MutableMapping[str, str]] = None) -> str:
    """Appends CPU_FLAGS to environ["XLA_FLAGS"] (default os.environ); returns the new value.

    Must run before the first JAX computation of the process (XLA reads XLA_FLAGS once, when
    the backend starts). A flag the user already set in XLA_FLAGS is left as the user set it.
    """
    environ = os.environ if environ is None else environ
    current = environ.get("XLA_FLAGS", "")
    given = {part.split("=", 1)[0] for part in current.split()}
    extra = [f"{name}={value}" for name, value in CPU_FLAGS.items() if name not in given]
    environ["XLA_FLAGS"] = " ".join([current.strip()] + extra).strip()
    return environ["XLA_FLAGS"]


# Programs that run once or a few times per run (parameter init, stage set-up, predictions): on
# CPU, XLA 0.10 spends most of their compile time in LLVM's optimiser (the threefry init of a
# 24-member setting-2.2 cohort: 26.9 s at the default level, 5.2 s at level 0, bit-identical
# values; benchmarks/README.md). Training steps keep the default level.
ONE_SHOT_OPTIONS = {"xla_backend_optimization_level": 0}


def one_shot_jit(fn, **jit_kwargs):
    """`jax.jit(fn, **jit_kwargs)` compiled with `ONE_SHOT_OPTIONS` on the CPU backend (default
    options elsewhere); the backend is read at the first call, not at import. Called inside
    another trace (compiler options apply to top-level programs only) it is a plain `jax.jit`."""
    import functools

    import jax
    from jax.core import Tracer
    jitted = {}

    @functools.wraps(fn)
    def call(*args, **kwargs):
        nested = any(isinstance(x, Tracer) for x in jax.tree.leaves((args, kwargs)))
        if nested not in jitted:
            top = not nested and jax.default_backend() == "cpu"
            jitted[nested] = jax.jit(fn, compiler_options=ONE_SHOT_OPTIONS if top else None,
                                     **jit_kwargs)
        return jitted[nested](*args, **kwargs)
    return call
