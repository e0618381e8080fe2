"""Per-device cost of the MetaMMF train step on 1, 2, 4 and 8 devices (issue 9), MovieLens size.

The step is the trainer's own (`metammf.train.prepare`: placement, sharded inputs and state,
the step with the item axis constrained over the mesh), compiled for a mesh of n fake CPU devices
(`--xla_force_host_platform_device_count=n`, each n in its own subprocess). `cost_analysis()` of
the compiled SPMD program gives per-device FLOPs and bytes accessed; with real parallelism they
fall roughly as 1/n. Shapes: the `mmgcn` v0530 variant (PCA 64/64/32 -> F = 160, meta MLP
160->160->5, dense fusion 160->80->32, two GraphSAGE layers) on synthetic data of MovieLens
size (55,485 users, 5,986 items, features 2048/128/100 before PCA, ~1.95M directed edges),
batch 3000 (3,000 is not a multiple of 8: the batch here is 3,000 rounded to 3,000 // n * n).

    python benchmarks/bench_metammf_sharding.py            # MovieLens size (~minutes)
    python benchmarks/bench_metammf_sharding.py --quick    # 1/10 of users and interactions

Prints a table and writes benchmarks/results/metammf_sharding.json. With --run it also times
3 steps per mesh (fake devices share this machine's cores: wall time is not a scaling claim).
"""
import argparse
import json
import os
import subprocess
import sys
import time

DEVICE_COUNTS = (1, 2, 4, 8)


def cost_one(n, quick, run_steps):
    import jax
    import numpy as np

    from metafusion_jax.configs import metammf as configs
    from metafusion_jax.data.rec.synthetic import make_synthetic_microvideo
    from metafusion_jax.metammf import placement as placement_lib
    from metafusion_jax.metammf import train

    scale = 10 if quick else 1
    data, _ = make_synthetic_microvideo(
        55485 // scale, 5986, 975000 // scale,
        modality_dims={"visual": 2048, "acoustic": 128, "textual": 100}, seed=0)
    config = configs.get_config("mmgcn")
    config.batch_size = 3000 // n * n
    config.mesh = (("data", n),)
    config.progress = False
    run = train.prepare(config, data)
    batches = run.sampler.epoch(run.keys[0], 1)
    batch = placement_lib.put_batch(
        {k: getattr(batches, k)[0] for k in ("users", "pos", "neg", "weight")}, run.placement)
    t0 = time.perf_counter()
    compiled = jax.jit(run.step_fn, donate_argnums=(0, 1)).lower(
        run.state["params"], run.state["opt_state"], run.inputs, batch, run.keys[1]).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    row = {"devices": n, "flops_per_device": float(cost.get("flops", float("nan"))),
           "bytes_per_device": float(cost.get("bytes accessed", float("nan"))),
           "compile_s": compile_s, "batch": config.batch_size, "n_users": data.n_users,
           "n_items": data.n_items, "directed_edges": int(2 * len(data.train)),
           "feature_dim": int(np.asarray(run.inputs["features"]).shape[1])}
    if run_steps:
        params, opt = run.state["params"], run.state["opt_state"]
        times = []
        for s in range(run_steps + 1):
            t = time.perf_counter()
            params, opt, loss = compiled(params, opt, run.inputs, batch,
                                         jax.random.fold_in(run.keys[1], s))
            float(loss)
            times.append(time.perf_counter() - t)
        row["step_median_s"] = sorted(times[1:])[len(times[1:]) // 2]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--run", type=int, default=0, help="also time this many steps")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "metammf_sharding.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(cost_one(args.child, args.quick, args.run)))
        return
    rows = []
    for n in DEVICE_COUNTS:
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        cmd = [sys.executable, __file__, "--child", str(n), "--run", str(args.run)]
        cmd += ["--quick"] if args.quick else []
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{n} devices failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    one = rows[0]
    print(f"MetaMMF step per device (U={one['n_users']}, I={one['n_items']}, F={one['feature_dim']}"
          f", {one['directed_edges']:,} directed edges, v0530 dims)")
    print(f"{'devices':>8}{'GFLOP/device':>14}{'x 1-device':>12}{'GB/device':>11}"
          f"{'x 1-device':>12}{'ideal 1/n':>11}" + (f"{'step s':>9}" if args.run else ""))
    for r in rows:
        r["flops_fraction"] = r["flops_per_device"] / one["flops_per_device"]
        r["bytes_fraction"] = r["bytes_per_device"] / one["bytes_per_device"]
        print(f"{r['devices']:>8}{r['flops_per_device'] / 1e9:>14.3f}{r['flops_fraction']:>12.3f}"
              f"{r['bytes_per_device'] / 1e9:>11.3f}{r['bytes_fraction']:>12.3f}"
              f"{1 / r['devices']:>11.3f}"
              + (f"{r['step_median_s']:>9.2f}" if args.run else ""))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"quick": args.quick, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
