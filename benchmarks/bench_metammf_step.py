"""MetaMMF train step at MovieLens size: the edge-list aggregation vs the chunked custom-VJP one.

The step is the trainer's own: `configs/metammf.py:mmgcn` (the reference's runnable "v0530" dims:
per-modality PCA 64/64/32 -> 160 features, meta MLP 160->160->5, dense meta layers 160->80->32,
two GraphSAGE mean layers over 64-dim users/items), `inputs.build` (features, graph),
`train.make_sampler` batches, `train.make_train_step` + `make_optimizer` jitted with donation as
`train_and_evaluate` does. Data: the planted synthetic generator at MovieLens shapes (55,485
users, 5,986 items, 2048/128/100-dim features, 1,239,508 interactions -> ~1.95M directed train
edges), batch 3000.

  old  `graph.edge_mean_neighbours`: gather x[src] [E2, H] + sorted segment sum; autodiff's
       backward is an unsorted scatter-add (patched in for `graph.mean_neighbours`).
  new  `graph.mean_neighbours`: chunked neighbour rows, custom VJP over the transposed layout.

Every measurement runs in its own subprocess pinned to one core (`taskset -c 0`, XLA
single-threaded, BLAS 1 thread); `limits.py` measures the GEMM peak and the STREAM copy in the
same pinning first. Also timed alone: one aggregation (mean_neighbours of [N, 64]) forward and
forward+backward, with the bytes it moves (a model count, see `agg_bytes`) against the copy
bandwidth. Then scaling curves (new and old: step time and XLA's peak memory against edges and
items), drawn to benchmarks/results/metammf_step_scaling.png.

  python benchmarks/bench_metammf_step.py            # ~10 min on a quiet 2-core machine
  python benchmarks/bench_metammf_step.py --quick    # 1/10 of the users and interactions
  python benchmarks/bench_metammf_step.py --no_curves
Writes benchmarks/results/metammf_step.json (and the PNG).
"""
import argparse
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
SIZES = {"users": 55_485, "items": 5_986, "interactions": 1_239_508}
MODALITIES = {"visual": 2048, "acoustic": 128, "textual": 100}
AGGREGATIONS = ("old", "new")


def agg_bytes(graph, hidden, aggregation, itemsize=4):
    """Bytes one aggregation moves (a model count: each gathered row read once, no cache reuse).

    new: indices R*W*4, gathered rows R*W*H, the partial sums written and read 2*R*H, the padded
         copy of x and the output 3*N*H (floats of `itemsize` bytes).
    old: indices 2*E2*4, gathered rows E2*H, the [E2, H] messages written and read 2*E2*H, the
         output N*H.
    """
    n = len(graph.inv_deg)
    if aggregation == "new":
        rows, width = graph.nbr.shape
        return rows * width * 4 + itemsize * hidden * (rows * width + 2 * rows + 3 * n)
    e2 = len(graph.src)
    return 2 * e2 * 4 + itemsize * hidden * (3 * e2 + n)


def _median_time(fn, repeats):
    """(median wall s, median process CPU s): on a shared machine CPU time is the steadier."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def child(args):
    """One measurement in this (pinned) process; prints one JSON line."""
    from metafusion_jax.training.xla_flags import apply_cpu_flags
    apply_cpu_flags()  # the binaries' CPU flags, before the backend starts
    import jax
    import jax.numpy as jnp
    import numpy as np

    from metafusion_jax.configs import metammf as configs
    from metafusion_jax.data.rec.synthetic import make_synthetic_microvideo
    from metafusion_jax.metammf import graph as graph_lib
    from metafusion_jax.metammf import inputs as inputs_lib
    from metafusion_jax.metammf import train as train_lib

    if args.child == "limits":
        sys.path.insert(0, str(HERE))
        import limits
        print(json.dumps(limits.measure()))
        return
    if args.child == "old":  # the trainer's model, with the edge-list aggregation patched in
        graph_lib.mean_neighbours = graph_lib.edge_mean_neighbours
    t0 = time.perf_counter()
    data, _ = make_synthetic_microvideo(args.users, args.items, args.interactions,
                                        modality_dims=dict(MODALITIES), seed=0)
    config = configs.get_config("mmgcn")
    config.batch_size = args.batch
    data, model, inputs = inputs_lib.build(config, data)
    build_s = time.perf_counter() - t0
    tx = train_lib.make_optimizer(config.learning_rate, config.weight_decay)
    key = jax.random.key(0)
    init_key, sample_key, dropout_key = jax.random.split(key, 3)
    params = jax.jit(model.init)(init_key)
    opt_state = jax.jit(tx.init)(params)
    batches = train_lib.make_sampler(config, data, sample_key).epoch(sample_key, 1)

    def batch_at(b):
        return {k: jnp.asarray(getattr(batches, k)[b % batches.weight.shape[0]])
                for k in ("users", "pos", "neg", "weight")}

    t0 = time.perf_counter()
    step = jax.jit(train_lib.make_train_step(model, tx), donate_argnums=(0, 1)).lower(
        params, opt_state, inputs, batch_at(0), dropout_key).compile()
    compile_s = time.perf_counter() - t0
    mem = step.memory_analysis()
    times, cpu_times = [], []
    for s in range(args.steps + 1):
        batch = batch_at(s)
        start, start_cpu = time.perf_counter(), time.process_time()
        params, opt_state, loss = step(params, opt_state, inputs, batch,
                                       jax.random.fold_in(dropout_key, s))
        loss = float(loss)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
        if not np.isfinite(loss):
            raise FloatingPointError(f"{args.child}: non-finite loss {loss} at step {s}")

    graph = inputs["graph"]
    n_nodes = int(graph.inv_deg.shape[0])
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n_nodes, 64)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(n_nodes, 64)).astype(np.float32))
    fwd = jax.jit(graph_lib.mean_neighbours)
    fwd_bwd = jax.jit(jax.value_and_grad(lambda x, g: (graph_lib.mean_neighbours(x, g) * w).sum()))
    fwd_s, fwd_cpu_s = _median_time(lambda: fwd(x, graph).block_until_ready(), 5)
    fwd_bwd_s, fwd_bwd_cpu_s = _median_time(lambda: jax.block_until_ready(fwd_bwd(x, graph)), 5)
    host_graph = jax.tree.map(np.asarray, graph)
    print(json.dumps({
        "aggregation": args.child, "n_users": data.n_users, "n_items": data.n_items,
        "directed_edges": int(graph.src.shape[0]), "feature_dim": int(inputs["features"].shape[1]),
        "batch": args.batch, "build_s": build_s, "compile_s": compile_s,
        "first_step_s": times[0], "step_median_s": statistics.median(times[1:]),
        "step_times_s": times[1:], "step_cpu_median_s": statistics.median(cpu_times[1:]),
        "last_loss": loss, "agg_fwd_cpu_s": fwd_cpu_s, "agg_fwd_bwd_cpu_s": fwd_bwd_cpu_s,
        "xla_peak_mib": (mem.temp_size_in_bytes + mem.argument_size_in_bytes
                         + mem.output_size_in_bytes - mem.alias_size_in_bytes) / 2 ** 20,
        "xla_temp_mib": mem.temp_size_in_bytes / 2 ** 20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "agg_fwd_s": fwd_s, "agg_fwd_bwd_s": fwd_bwd_s,
        "agg_bytes": agg_bytes(host_graph, 64, args.child),
    }))


def run_child(kind, users, items, interactions, steps, batch):
    cmd = [sys.executable, __file__, "--child", kind, "--users", str(users), "--items",
           str(items), "--interactions", str(interactions), "--steps", str(steps),
           "--batch", str(batch)]
    if shutil.which("taskset") and 0 in os.sched_getaffinity(0):
        cmd = ["taskset", "-c", "0"] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot_curves(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for col, (axis_key, label) in enumerate((("directed_edges", "directed train edges (M)"),
                                              ("n_items", "items (thousands)"))):
        scale = 1e6 if axis_key == "directed_edges" else 1e3
        for agg, style in (("old", "o--"), ("new", "s-")):
            pts = sorted((r[axis_key] / scale, r) for r in curves[axis_key] if r["aggregation"] == agg)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            axes[0, col].plot(xs, [p[1]["step_cpu_median_s"] for p in pts], style, label=agg)
            axes[1, col].plot(xs, [p[1]["xla_peak_mib"] for p in pts], style, label=agg)
        axes[0, col].set_title(f"train step vs {label.split(' (')[0]}")
        axes[1, col].set_xlabel(label)
        axes[0, col].set_ylabel("step, median process CPU time (s)")
        axes[1, col].set_ylabel("XLA peak memory (MiB)")
        for row in range(2):
            axes[row, col].set_ylim(bottom=0)
            axes[row, col].grid(alpha=0.3)
            axes[row, col].legend()
    fig.suptitle("MetaMMF v0530 step, 1 pinned core: edge-list (old) vs chunked custom VJP (new)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no_curves", action="store_true")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=3000)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--interactions", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(HERE / "results" / "metammf_step.json"))
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    scale = 10 if args.quick else 1
    users, items, inter = SIZES["users"] // scale, SIZES["items"], SIZES["interactions"] // scale
    peaks = run_child("limits", 0, 0, 0, 0, 0)
    rows = [run_child(a, users, items, inter, args.steps, args.batch) for a in AGGREGATIONS]
    old, new = rows
    print(f"MetaMMF v0530 step, U={users} I={items} E2={new['directed_edges']} F=160 batch "
          f"{args.batch}; 1 core (taskset -c 0, XLA 1 thread); same run: GEMM "
          f"{peaks['gemm_gflops']:.1f} GFLOP/s wall, {peaks['gemm_gflops_cpu']:.1f} by CPU time; "
          f"STREAM copy {peaks['copy_gbs']:.1f} GB/s wall, {peaks['copy_gbs_cpu']:.1f} by CPU time")
    print(f"{'aggregation':<12}{'step s':>9}{'(CPU s)':>9}{'compile s':>11}{'agg fwd s':>11}"
          f"{'(CPU s)':>9}{'agg f+b s':>11}{'(CPU s)':>9}{'agg GB':>8}{'fwd GB/s':>10}"
          f"{'% copy':>8}{'XLA MiB':>9}")
    for r in rows:
        # bandwidth from CPU time: the steadier number on a shared machine (wall is in the JSON)
        r["agg_fwd_gbs"] = r["agg_bytes"] / r["agg_fwd_cpu_s"] / 1e9
        r["agg_fraction_of_copy"] = r["agg_fwd_gbs"] / peaks["copy_gbs_cpu"]
        print(f"{r['aggregation']:<12}{r['step_median_s']:>9.3f}{r['step_cpu_median_s']:>9.3f}"
              f"{r['compile_s']:>11.1f}{r['agg_fwd_s']:>11.3f}{r['agg_fwd_cpu_s']:>9.3f}"
              f"{r['agg_fwd_bwd_s']:>11.3f}{r['agg_fwd_bwd_cpu_s']:>9.3f}"
              f"{r['agg_bytes'] / 1e9:>8.2f}{r['agg_fwd_gbs']:>10.1f}"
              f"{100 * r['agg_fraction_of_copy']:>7.0f}%{r['xla_peak_mib']:>9.0f}")
    speedup = old["step_median_s"] / new["step_median_s"]
    speedup_cpu = old["step_cpu_median_s"] / new["step_cpu_median_s"]
    print(f"step old / new = {speedup:.2f}x wall, {speedup_cpu:.2f}x CPU; aggregation f+b old / "
          f"new = {old['agg_fwd_bwd_cpu_s'] / new['agg_fwd_bwd_cpu_s']:.2f}x CPU")
    curves = {}
    if not args.no_curves:
        fractions = (0.25, 0.5, 1.0)
        curves["directed_edges"] = [
            run_child(a, users, items, int(inter * f), 3, args.batch)
            for f in fractions[:-1] for a in AGGREGATIONS] + rows
        curves["n_items"] = [
            run_child(a, users, int(items * f), inter, 3, args.batch)
            for f in fractions[:-1] for a in AGGREGATIONS] + rows
        png = HERE / "results" / "metammf_step_scaling.png"
        plot_curves(curves, png)
        print(f"wrote {png}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "quick": args.quick, "threads": "taskset -c 0; XLA 1 thread; BLAS 1 thread",
        "limits": peaks, "rows": rows, "step_speedup_old_over_new": speedup,
        "step_speedup_old_over_new_cpu": speedup_cpu,
        "curves": curves}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
