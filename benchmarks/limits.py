"""The machine's limits, measured in the same run as a benchmark: fp32 GEMM and memory bandwidth.

    from benchmarks import limits          # or `import limits` from inside benchmarks/
    peaks = limits.measure()               # {"gemm_gflops": ..., "copy_gbs": ..., ...}

Measured (medians of `repeats` calls, after a warm-up):
  gemm_gflops      jitted JAX fp32 matmul, n x n x n (default 1024): 2 n^3 / seconds.
  copy_gbs         STREAM "copy" in numpy: `np.copyto(b, a)` into a preallocated buffer of
                   `mib` MiB, counting read + write (2 x bytes) / seconds.
  jax_copy_gbs     the same copy as a jitted `a + 1` with the input donated (XLA reuses the
                   buffer: no fresh pages), 2 x bytes / seconds.
  gemm_gflops_cpu, copy_gbs_cpu  the first two from process CPU time instead of wall time
                   (on a shared machine the steadier numbers; compare them with CPU times).
  jax_fresh_copy_gbs  the same without donation: every call writes a freshly allocated output,
                   whose first touch page-faults. This is what an XLA program that materialises a
                   large temporary pays on CPU (here 4-5x slower than copy_gbs).
Threads are whatever the process was started with: pin before importing (the benchmarks set
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" and run under
`taskset -c 0`). Run alone: `taskset -c 0 python benchmarks/limits.py` prints them and writes
benchmarks/results/limits.json.
"""
import json
import os
import pathlib
import statistics
import time

SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _median_time(fn, repeats, cpu=False):
    """Median wall seconds of fn() (process CPU seconds with cpu=True: steadier when shared)."""
    clock = time.process_time if cpu else time.perf_counter
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def gemm_gflops(n=1024, repeats=5, cpu=False):
    """fp32 GEMM GFLOP/s of a jitted n x n x n matmul."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(n, n)).astype(np.float32))
    b = jnp.asarray(rng.normal(size=(n, n)).astype(np.float32))
    matmul = jax.jit(jnp.matmul)
    seconds = _median_time(lambda: matmul(a, b).block_until_ready(), repeats, cpu)
    return 2.0 * n ** 3 / seconds / 1e9


def copy_gbs(mib=256, repeats=5, cpu=False):
    """STREAM-like copy bandwidth in GB/s (numpy, preallocated, read + write counted)."""
    import numpy as np
    a = np.ones(mib * 2 ** 20 // 4, np.float32)
    b = np.empty_like(a)
    seconds = _median_time(lambda: np.copyto(b, a), repeats, cpu)
    return 2.0 * a.nbytes / seconds / 1e9


def jax_copy_gbs(mib=256, repeats=5, donate=True):
    """The copy as a jitted XLA program, with or without reusing the buffer (see module doc)."""
    import jax
    import jax.numpy as jnp
    n = mib * 2 ** 20 // 4
    scale = jax.jit(lambda a: a + 1.0, donate_argnums=(0,) if donate else ())
    state = {"a": jnp.ones((n,), jnp.float32)}

    def step():
        out = scale(state["a"])
        out.block_until_ready()
        if donate:
            state["a"] = out

    seconds = _median_time(step, repeats)
    return 2.0 * n * 4 / seconds / 1e9


def measure(repeats=5, gemm_n=1024, copy_mib=256):
    """All limits as a dict (see module doc)."""
    return {
        "gemm_gflops": gemm_gflops(gemm_n, repeats),
        "copy_gbs": copy_gbs(copy_mib, repeats),
        "jax_copy_gbs": jax_copy_gbs(copy_mib, repeats, donate=True),
        "jax_fresh_copy_gbs": jax_copy_gbs(copy_mib, repeats, donate=False),
        "gemm_gflops_cpu": gemm_gflops(gemm_n, repeats, cpu=True),
        "copy_gbs_cpu": copy_gbs(copy_mib, repeats, cpu=True),
        "gemm_n": gemm_n, "copy_mib": copy_mib, "repeats": repeats,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "affinity": sorted(os.sched_getaffinity(0)),
    }


def main():
    os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA_FLAGS)
    result = measure()
    for key in ("gemm_gflops", "copy_gbs", "jax_copy_gbs", "jax_fresh_copy_gbs",
                "gemm_gflops_cpu", "copy_gbs_cpu"):
        print(f"{key:<20}{result[key]:>10.1f}")
    out = pathlib.Path(__file__).parent / "results" / "limits.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
