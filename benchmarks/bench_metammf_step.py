"""One MetaMMF training step at MovieLens size: paper-dims CP fusion next to a static MLP.

Shapes (spec metammf.md 1.1 and 2.2): 55,485 users, 5,986 items, features 2048+128+100 = 2276,
~1.2M interactions (synthetic planted data of those shapes), GCN backbone (2x GraphSAGE over the
~2M directed train edges), BPR batch 3000, Adam. Models compared, same dims:

  cp        meta MLP 2276->2276->5, CP fusion [2276,1024,512,256,32], R=16  (the paper's light form)
  cp_repo   the reference code's collapsed CP (same dims)
  static    the static-fusion MLP [2276,1024,512,256,32] (no meta learner): the ablation

Each model runs in its own subprocess so its peak RSS is its own. Threads: XLA's CPU client uses
the machine's cores (2 here); numpy/BLAS pinned to 1 thread. Prints a table, writes
benchmarks/results/metammf_step.json.

  python benchmarks/bench_metammf_step.py            # MovieLens size (a few minutes on 2 cores)
  python benchmarks/bench_metammf_step.py --quick    # 1/10 of the users and interactions
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

# label -> fusion kind of make_metammf (static_mlp is make_metammf with fusion="static").
FUSIONS = {"cp": "cp", "cp_repo": "cp_repo", "static": "static"}
FUSION_DIMS = (1024, 512, 256, 32)


def run_one(label, n_users, n_items, n_inter, steps, batch):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from metafusion_jax.data.rec.synthetic import make_synthetic_microvideo
    from metafusion_jax.metammf import graph as graph_lib
    from metafusion_jax.metammf import models
    from metafusion_jax.metammf import train as train_lib
    from metafusion_jax.metammf.features import prepare_item_features

    data, _ = make_synthetic_microvideo(
        n_users, n_items, n_inter,
        modality_dims={"visual": 2048, "acoustic": 128, "textual": 100}, seed=0)
    feat, slices = prepare_item_features(data.features)
    model = models.make_metammf(
        n_users=data.n_users, n_items=data.n_items, feature_dim=feat.shape[1],
        modality_slices=slices, fusion=FUSIONS[label], fusion_dims=FUSION_DIMS, s_dim=5,
        rank=16, id_dim=32, user_dim=64, backbone="gcn")
    inputs = {"features": jnp.asarray(feat),
              "graph": jax.tree.map(jnp.asarray, graph_lib.make_bipartite_graph(
                  data.train, data.n_users, data.n_items))}
    tx = train_lib.make_optimizer(1e-3, 1e-6)
    step = jax.jit(train_lib.make_train_step(model, tx), donate_argnums=(0, 1))
    key = jax.random.key(0)
    params = model.init(key)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    opt_state = tx.init(params)
    rng = np.random.default_rng(0)
    times = []
    for s in range(steps + 1):
        idx = rng.integers(0, len(data.train), batch)
        b = {"users": jnp.asarray(data.train[idx, 0]), "pos": jnp.asarray(data.train[idx, 1]),
             "neg": jnp.asarray(rng.integers(0, data.n_items, (batch, 1)), jnp.int32),
             "weight": jnp.ones((batch,), jnp.float32)}
        t = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, inputs, b, jax.random.fold_in(key, s))
        loss = float(loss)
        times.append(time.perf_counter() - t)
        if not np.isfinite(loss):
            raise FloatingPointError(f"{label}: non-finite loss {loss} at step {s}")
    steady = sorted(times[1:])[len(times[1:]) // 2]
    return {"model": label, "params": n_params, "compile_plus_first_s": times[0],
            "step_median_s": steady, "step_times_s": times[1:], "last_loss": loss,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "n_users": data.n_users, "n_items": data.n_items,
            "n_train_pairs": int(len(data.train)), "directed_edges": int(2 * len(data.train)),
            "feature_dim": int(feat.shape[1]), "batch": batch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", default="cp,cp_repo,static")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "metammf_step.json"))
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    sizes = (55485 // scale, 5986, 1239508 // scale)
    if args.child:
        print(json.dumps(run_one(args.child, *sizes, steps=args.steps, batch=3000)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = []
    for label in args.models.split(","):
        cmd = [sys.executable, __file__, "--child", label, "--steps", str(args.steps)]
        cmd += ["--quick"] if args.quick else []
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{label} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = {r["model"]: r for r in rows}.get("static")
    print(f"MovieLens-shaped step (U={sizes[0]}, I={sizes[1]}, F=2276, batch 3000, GCN, "
          f"{rows[0]['directed_edges']} directed edges)")
    print(f"{'model':<9}{'params':>12}{'compile+1st s':>15}{'step s (median)':>17}"
          f"{'x static':>10}{'peak RSS MiB':>14}")
    for r in rows:
        ratio = r["step_median_s"] / base["step_median_s"] if base else float("nan")
        r["ratio_to_static"] = ratio
        print(f"{r['model']:<9}{r['params']:>12,}{r['compile_plus_first_s']:>15.1f}"
              f"{r['step_median_s']:>17.2f}{ratio:>10.2f}{r['peak_rss_mib']:>14.0f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"quick": args.quick, "threads": "XLA default (2 cores); BLAS 1",
                   "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
