r"""Meta Fusion step time and peak memory against members and seeds in one program (issue 10).

The trainer's mutual-learning step (`train.build_run` -> `run.cohort.step.step`, setting 2.2: 24
PCA-cohort members, head [300, 200, 100], batch 64), vmapped as `program.make_program` vmaps it:
over rho runs (R) and over seeds (S), so one program trains S x R x 24 members. Each point jits
that step with buffer donation (as inside the trainer's scan: no fresh output pages), times
`--steps` steps on one pinned core (XLA single-threaded) and reads XLA's memory analysis
(arguments + outputs + temporaries). Two curves:

* members: S = 1, R = 1, 2, 4, 8 (24 to 192 members in the program),
* seeds:   R = 2 (the rho > 0 stage), S = 1, 2, 4, 10.

A flat "ms per member-step" line means no stacking penalty. The executed GEMM GFLOP/s of the step
(the head's dense FLOPs, padded first layer included, no dx for the first layer) is reported
against the GEMM peak measured in the same run (`limits.py`). Every (seed, rho run) trains on its
own batch, as in the trainer (each run permutes the rows with its own key).

The 48-member point (S = 1, R = 2: the trainer's rho > 0 stage) is also profiled op by op (JAX
profiler): the time of its GEMM ops (dot / YNN fusions) against everything else, and the step's
bound = those GEMMs as XLA runs them + Adam at the memory floor (7 x the parameter bytes at the
same run's copy bandwidth), as a fraction of the GEMM peak.

    taskset -c 0 python benchmarks/bench_metafusion_curves.py          # ~3 min
Writes benchmarks/results/metafusion_curves.{json,png}.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                           " intra_op_parallelism_threads=1").strip()

from metafusion_jax.training.xla_flags import apply_cpu_flags  # noqa: E402

apply_cpu_flags()

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import limits  # noqa: E402
from bench_metafusion import setup  # noqa: E402
from metafusion_jax.configs import metafusion as mf_configs  # noqa: E402

HERE = pathlib.Path(__file__).parent
BATCH = 64


def head_flops(spec, hidden, n_members):
    """Executed FLOPs of one training step of n_members heads (fwd + dW, dx except layer 1)."""
    sizes = (spec.total_width, *hidden, 1)
    first = 2 * 2 * sizes[0] * sizes[1]
    rest = sum(3 * 2 * a * b for a, b in zip(sizes[1:-1], sizes[2:]))
    return n_members * BATCH * (first + rest)


def measure(run, n_seeds, n_rhos, steps, profile=False):
    step = run.cohort.step
    pick = lambda a: jnp.stack([a[s % a.shape[0]] for s in range(n_seeds)])
    params = jax.tree.map(lambda a: jnp.stack([pick(a)] * n_rhos, axis=1), run.params0)
    opt = jax.vmap(jax.vmap(step.init_opt))(params)
    data = jax.tree.map(pick, run.cohort.data)
    # every (seed, rho run) its own batch, as in the trainer (each run permutes with its own key)
    runs = lambda a: jnp.stack([a[:, r * BATCH:(r + 1) * BATCH] for r in range(n_rhos)], axis=1)
    xb = tuple(runs(x) for x in data["x_train"])
    yb = runs(data["y_train"])
    mask = jnp.ones((BATCH,), jnp.float32)
    rho = jnp.full((n_seeds, n_rhos), 0.99, jnp.float32)
    w = jnp.ones((n_seeds, n_rhos, run.spec.num_members), jnp.float32)
    per_rho = jax.vmap(step.step, in_axes=(0, 0, 0, 0, None, 0, 0))
    per_seed = jax.vmap(per_rho, in_axes=(0, 0, 0, 0, None, 0, 0))
    fn = jax.jit(lambda p, o, x, y, r, w: per_seed(p, o, x, y, mask, r, w)[:2],
                 donate_argnums=(0, 1))
    compiled = fn.lower(params, opt, xb, yb, rho, w).compile()
    mem = compiled.memory_analysis()
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes)
    for _ in range(2):
        params, opt = compiled(params, opt, xb, yb, rho, w)
    jax.block_until_ready(params)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        params, opt = compiled(params, opt, xb, yb, rho, w)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - start)
    n_members = n_seeds * n_rhos * run.spec.num_members
    step_s = float(np.median(times))
    out = dict(seeds=n_seeds, rhos=n_rhos, members=n_members, step_s=step_s,
               ms_per_member_step=1e3 * step_s / n_members, peak_mib=peak / 2 ** 20,
               gflops=head_flops(run.spec, run.config.cohort.head_hiddens, n_members) / step_s / 1e9)
    if profile:
        out["profile"] = op_profile(compiled, [params, opt, xb, yb, rho, w], steps)
        out["param_bytes"] = int(sum(x.nbytes for x in jax.tree.leaves(params)))
    return out


def op_profile(compiled, args, steps):
    """Per-op time of the compiled step (JAX profiler, XLA CPU thunks), ms per step, by kind:
    "gemm" (dot / dot_general / YNN fusions, which hold the dots here) and "other" ops."""
    import glob
    import tempfile
    from jax._src.profiler import ProfileData  # private API: reads the trace's XSpace
    with tempfile.TemporaryDirectory(prefix="mf_trace_") as folder:  # the trace is not kept
        jax.profiler.start_trace(folder)
        for _ in range(steps):
            args[0], args[1] = compiled(*args)
        jax.block_until_ready(args[0])
        jax.profiler.stop_trace()
        data = ProfileData.from_file(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[-1])
    ops = {}
    for plane in data.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):
                continue
            for ev in line.events:
                if ev.name.startswith(("ThunkExecutor", "end:")):
                    continue
                ops[ev.name] = ops.get(ev.name, 0.0) + ev.duration_ns / 1e6 / steps
    gemm = {k: v for k, v in ops.items() if k.startswith(("dot", "ynn_fusion"))}
    other = {k: v for k, v in ops.items() if k not in gemm}
    top = sorted(other.items(), key=lambda kv: -kv[1])[:8]
    return dict(gemm_ms=sum(gemm.values()), other_ms=sum(other.values()),
                top_other_ms={k: round(v, 3) for k, v in top})


def roofline(row, lim, flops):
    """The step's bound: its GEMMs as XLA runs them (profiled) + Adam at memory bandwidth
    (read p, g, m, v; write p, m, v: 7 x the parameter bytes at the same run's copy GB/s)."""
    adam_floor_ms = 7 * row["param_bytes"] / (lim["copy_gbs"] * 1e9) * 1e3
    bound_ms = row["profile"]["gemm_ms"] + adam_floor_ms
    gemm_gflops = flops / (row["profile"]["gemm_ms"] / 1e3) / 1e9
    return dict(adam_floor_ms=adam_floor_ms, bound_ms=bound_ms,
                gemm_fraction_of_peak=gemm_gflops / lim["gemm_gflops"],
                bound_fraction_of_peak=flops / (bound_ms / 1e3) / 1e9 / lim["gemm_gflops"])


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for curve, marker in (("members", "o"), ("seeds", "s")):
        pts = [r for r in rows if r["curve"] == curve]
        x = [r["members"] for r in pts]
        label = ("rho runs R = 1, 2, 4, 8 (S = 1)" if curve == "members"
                 else "seeds S = 1, 2, 4, 10 (R = 2)")
        axes[0].plot(x, [r["ms_per_member_step"] for r in pts], marker=marker, label=label)
        axes[1].plot(x, [r["peak_mib"] for r in pts], marker=marker, label=label)
    axes[0].set(xlabel="members in one program (S x R x 24)", ylabel="ms per member-step",
                title="step time / member (flat = no stacking penalty)", xscale="log")
    axes[0].set_ylim(bottom=0)
    axes[1].set(xlabel="members in one program (S x R x 24)", ylabel="MiB (XLA memory analysis)",
                title="peak memory of the step", xscale="log", yscale="log")
    ticks = sorted({r["members"] for r in rows})
    for ax in axes:
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Meta Fusion setting 2.2 step, batch 64, 1 core")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=str(HERE / "results" / "metafusion_curves.json"))
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from --out's JSON")
    args = parser.parse_args()
    if args.replot:
        out = pathlib.Path(args.out)
        return plot(json.loads(out.read_text())["rows"], out.with_suffix(".png"))
    config = mf_configs.get_config("setting_2_2")
    run = setup(config, 10)
    lim = limits.measure()
    rows = []
    for curve, points in (("members", [(1, r) for r in (1, 2, 4, 8)]),
                          ("seeds", [(s, 2) for s in (1, 2, 4, 10)])):
        for n_seeds, n_rhos in points:
            profile = curve == "seeds" and n_seeds == 1  # the trainer's rho > 0 stage, 1 seed
            row = dict(curve=curve, **measure(run, n_seeds, n_rhos, args.steps, profile))
            row["gemm_peak_fraction"] = row["gflops"] / lim["gemm_gflops"]
            rows.append(row)
            if profile:
                flops = head_flops(run.spec, run.config.cohort.head_hiddens, row["members"])
                row["roofline"] = roofline(row, lim, flops)
                p, r = row["profile"], row["roofline"]
                print(f"  op profile: GEMMs {p['gemm_ms']:.1f} ms "
                      f"({100 * r['gemm_fraction_of_peak']:.0f}% of peak), other ops "
                      f"{p['other_ms']:.1f} ms; Adam's memory floor {r['adam_floor_ms']:.1f} ms; "
                      f"bound GEMMs + Adam floor {r['bound_ms']:.1f} ms = "
                      f"{100 * r['bound_fraction_of_peak']:.0f}% of GEMM peak", flush=True)
            print(f"{curve:8s} S={n_seeds:2d} R={n_rhos} members={row['members']:4d} "
                  f"step {row['step_s'] * 1e3:8.1f} ms  {row['ms_per_member_step']:.3f} ms/member "
                  f"{row['gflops']:5.1f} GFLOP/s ({100 * row['gemm_peak_fraction']:.0f}% of "
                  f"GEMM peak {lim['gemm_gflops']:.1f})  peak {row['peak_mib']:.0f} MiB",
                  flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(limits=lim, rows=rows), indent=1))
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
