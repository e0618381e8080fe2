r"""Benchmark: the CPU flag of `metafusion_jax.training.xla_flags` on a stacked cohort step.

Work: one gradient of the summed MSE of M stacked members (`jax.vmap` over the member axis, the
layout of `metafusion.cohort`), each a setting-2.2 head [240 -> 300 -> 200 -> 100 -> 1] on a batch
of 64, for M = 24 (one rho run), 72 (3 rho) and 240 (10 seeds x 24). Every configuration runs in
a fresh subprocess (XLA reads XLA_FLAGS once per process), with the XLA default and with
`apply_cpu_flags()`, one after the other in one invocation; the table gives medians of
`--repeats` timed calls after a warm-up, and the ratio default / flags. Both processes print
the same loss, which must agree (checked).

    python benchmarks/bench_xla_flags.py     # ~1 min on a 2-core CPU; writes results/xla_flags.json
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

DIMS = (240, 300, 200, 100, 1)
BATCH = 64


def worker(members: int, repeats: int) -> dict:
    """Runs in the subprocess: times the jitted stacked gradient; returns seconds and loss."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), len(DIMS))
    params = [{"w": jax.random.normal(k, (members, a, b)) / a ** 0.5,
               "b": jnp.zeros((members, b))}
              for k, a, b in zip(keys[:-1], DIMS[:-1], DIMS[1:])]
    x = jax.random.normal(keys[-1], (BATCH, DIMS[0]))
    y = jnp.sin(x[:, 0])

    def member_loss(p):
        h = x
        for i, layer in enumerate(p):
            h = h @ layer["w"] + layer["b"]
            h = jax.nn.relu(h) if i < len(p) - 1 else h
        return jnp.mean((h[:, 0] - y) ** 2)

    grad = jax.jit(jax.value_and_grad(lambda p: jnp.sum(jax.vmap(member_loss)(p))))
    jax.block_until_ready(grad(params))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss, g = jax.block_until_ready(grad(params))
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "loss": float(loss)}


def run_child(members: int, repeats: int, flags: bool) -> dict:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if flags:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
        from metafusion_jax.training.xla_flags import apply_cpu_flags
        apply_cpu_flags(env)
    out = subprocess.run([sys.executable, __file__, "--child", str(members), str(repeats)],
                         env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, nargs="+", default=[24, 72, 240])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--child", type=int, nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" /
                                        "xla_flags.json"))
    args = p.parse_args()
    if args.child:
        print(json.dumps(worker(*args.child)))
        return
    flops = lambda m: 6 * m * BATCH * sum(a * b for a, b in zip(DIMS[:-1], DIMS[1:]))
    rows = []
    print("| members | XLA default (ms) | with apply_cpu_flags (ms) | speed-up | GFLOP/s default "
          "| GFLOP/s flags |\n|---|---|---|---|---|---|")
    for m in args.members:
        base, fast = run_child(m, args.repeats, False), run_child(m, args.repeats, True)
        if abs(base["loss"] - fast["loss"]) > 1e-4 * max(1.0, abs(base["loss"])):
            raise SystemExit(f"losses differ for M={m}: {base['loss']} vs {fast['loss']}")
        row = {"members": m, "default_s": base["seconds"], "flags_s": fast["seconds"],
               "speedup": base["seconds"] / fast["seconds"],
               "gflops_default": flops(m) / base["seconds"] / 1e9,
               "gflops_flags": flops(m) / fast["seconds"] / 1e9}
        rows.append(row)
        print(f"| {m} | {1e3 * row['default_s']:.1f} | {1e3 * row['flags_s']:.1f} | "
              f"{row['speedup']:.2f}x | {row['gflops_default']:.1f} | {row['gflops_flags']:.1f} |")
    result = {"work": f"grad of summed MSE, vmapped head {list(DIMS)}, batch {BATCH}",
              "flags": "--xla_cpu_experimental_ynn_fusion_type=", "machine": platform.machine(),
              "cpus_visible": os.cpu_count(), "repeats": args.repeats, "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
