"""Benchmark: full-ranking metrics at MovieLens size vs its bare score GEMM and a numpy loop.

Random embeddings, U = 55,485 users x I = 5,986 items, H = 64, ~1.2M unique interactions split at
random into 80 % train (masked), 10 % val (unused) and 10 % eval. `ranking_metrics` (ks = 10, 20)
is timed for each chunk size (compile + first call, then the median of 3 steady calls, wall and
process CPU time: the machine is shared, so CPU time is the less noisy number); the
reference-style loop (per user: numpy scores, mask train items, full argsort) runs on a random
subsample of users and its time per user is extrapolated to all users. Both compute the metrics
of the subsample, which must agree.

Side by side in the same run, for each chunk size (0 = the function's own default,
`ranking.DEFAULT_CHUNK`): the bare chunked score GEMM (the same padded user chunks, one jitted
[C, H] x [H, I] matmul each, nothing else): the eval's floor; the table gives eval / GEMM.

Threads are pinned before numpy/jax load: OMP/OPENBLAS/MKL_NUM_THREADS = --threads and
XLA_FLAGS = --xla_cpu_multi_thread_eigen=(threads > 1) intra_op_parallelism_threads=--threads.

    taskset -c 0 python benchmarks/bench_ranking.py   # writes benchmarks/results/ranking.json
    python benchmarks/bench_ranking.py --users 5000 --loop_users 200   # quick smoke run
"""
import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=55_485)
    p.add_argument("--items", type=int, default=5_986)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--interactions", type=int, default=1_200_000)
    p.add_argument("--chunk_sizes", type=int, nargs="+", default=[0, 256, 1024, 4096])
    p.add_argument("--loop_users", type=int, default=2_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "ranking.json"))
    return p.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
os.environ["XLA_FLAGS"] = (
    f"--xla_cpu_multi_thread_eigen={'true' if ARGS.threads > 1 else 'false'} "
    f"intra_op_parallelism_threads={ARGS.threads}")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from metafusion_jax.training.xla_flags import apply_cpu_flags  # noqa: E402

apply_cpu_flags()  # the binaries' CPU flags

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from metafusion_jax.metrics import ranking  # noqa: E402
from metafusion_jax.metrics.ranking import ranking_metrics  # noqa: E402

KS = (10, 20)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_data(n_users, n_items, hidden, n_inter, seed=0):
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, n_users * n_items, int(n_inter * 1.001)))[:n_inter]
    codes = rng.permutation(codes)
    pairs = np.stack([codes // n_items, codes % n_items], axis=1).astype(np.int32)
    n_train, n_val = int(0.8 * len(pairs)), int(0.1 * len(pairs))
    train, evals = pairs[:n_train], pairs[n_train + n_val:]
    user_emb = rng.normal(size=(n_users, hidden)).astype(np.float32)
    item_emb = rng.normal(size=(n_items, hidden)).astype(np.float32)
    return user_emb, item_emb, train, evals


def numpy_loop(user_emb, item_emb, train, evals, users):
    """The reference protocol: one numpy score vector and full argsort per user."""
    by_user_train = np.split(train[np.argsort(train[:, 0], kind="stable"), 1],
                             np.cumsum(np.bincount(train[:, 0], minlength=len(user_emb)))[:-1])
    by_user_eval = np.split(evals[np.argsort(evals[:, 0], kind="stable"), 1],
                            np.cumsum(np.bincount(evals[:, 0], minlength=len(user_emb)))[:-1])
    max_k = max(KS)
    disc = 1.0 / np.log2(np.arange(max_k) + 2.0)
    sums = {f"{m}@{k}": 0.0 for m in ("precision", "recall", "ndcg", "map", "hr") for k in KS}
    n_rel_total, n_users = 0, 0
    for u in users:
        rel = by_user_eval[u]
        if len(rel) == 0:
            continue
        scores = item_emb @ user_emb[u]
        scores[by_user_train[u]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:max_k]
        hit = np.isin(top, rel).astype(np.float64)
        n_users += 1
        n_rel_total += len(rel)
        for k in KS:
            h = hit[:k]
            n_ideal = min(len(rel), k)
            sums[f"precision@{k}"] += h.sum() / k
            sums[f"recall@{k}"] += h.sum() / len(rel)
            sums[f"ndcg@{k}"] += (h * disc[:k]).sum() / disc[:n_ideal].sum()
            sums[f"map@{k}"] += (np.cumsum(h) / np.arange(1, k + 1) * h).sum() / n_ideal
            sums[f"hr@{k}"] += h.sum()
    return {name: value / (n_rel_total if name.startswith("hr") else n_users)
            for name, value in sums.items()}


def bare_gemm(user_emb, item_emb, chunk):
    """The eval's score GEMM alone: one [C, H] x [H, I] matmul per padded user chunk."""
    n_chunks = -(-len(user_emb) // chunk)
    users = jnp.asarray(np.pad(user_emb, ((0, n_chunks * chunk - len(user_emb)), (0, 0))))
    users = users.reshape(n_chunks, chunk, -1)
    items = jnp.asarray(item_emb)
    score = jax.jit(lambda u, r, i: jnp.matmul(u[r], i.T, precision=lax.Precision.HIGHEST))

    def run():
        out = None
        for r in range(n_chunks):
            out = score(users, r, items)
        out.block_until_ready()
    return run


def timed(fn, repeats=3):
    """(wall median, CPU median, first-call wall) of fn()."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), first, wall


def main():
    t0 = time.perf_counter()
    user_emb, item_emb, train, evals = make_data(ARGS.users, ARGS.items, ARGS.hidden,
                                                 ARGS.interactions)
    data_s = time.perf_counter() - t0
    rss_data = peak_rss_mib()
    rows = []
    for chunk in ARGS.chunk_sizes:
        size = chunk or None
        effective = chunk or min(ranking.DEFAULT_CHUNK, ARGS.users)
        metrics = ranking_metrics(user_emb, item_emb, train, evals, ks=KS, chunk_size=size)
        wall, cpu, first, steady = timed(lambda: ranking_metrics(
            user_emb, item_emb, train, evals, ks=KS, chunk_size=size))
        g_wall, g_cpu, _, _ = timed(bare_gemm(user_emb, item_emb, effective))
        rows.append(dict(chunk_size=chunk, effective_chunk=effective, first_call_s=first,
                         steady_median_s=wall, steady_s=steady, steady_cpu_median_s=cpu,
                         gemm_median_s=g_wall, gemm_cpu_median_s=g_cpu,
                         eval_over_gemm_wall=wall / g_wall, eval_over_gemm_cpu=cpu / g_cpu,
                         gemm_gflops_cpu=2 * ARGS.users * ARGS.items * ARGS.hidden / g_cpu / 1e9,
                         peak_rss_mib=peak_rss_mib(), metrics=metrics))

    # Side by side: the per-user loop and ranking_metrics on the same subsample of users.
    rng = np.random.default_rng(1)
    sub = np.sort(rng.choice(ARGS.users, size=min(ARGS.loop_users, ARGS.users), replace=False))
    start, start_cpu = time.perf_counter(), time.process_time()
    loop_metrics = numpy_loop(user_emb, item_emb, train, evals, sub)
    loop_s, loop_cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
    remap = np.full(ARGS.users, -1)
    remap[sub] = np.arange(len(sub))
    keep_t, keep_e = remap[train[:, 0]] >= 0, remap[evals[:, 0]] >= 0
    sub_train = np.stack([remap[train[keep_t, 0]], train[keep_t, 1]], axis=1)
    sub_eval = np.stack([remap[evals[keep_e, 0]], evals[keep_e, 1]], axis=1)
    sub_metrics = ranking_metrics(user_emb[sub], item_emb, sub_train, sub_eval, ks=KS)
    max_diff = max(abs(sub_metrics[k] - loop_metrics[k]) for k in loop_metrics)
    loop_all_s = loop_s / len(sub) * ARGS.users
    loop_all_cpu_s = loop_cpu_s / len(sub) * ARGS.users
    best = min(r["steady_median_s"] for r in rows)
    best_cpu = min(r["steady_cpu_median_s"] for r in rows)

    print(f"ranking_metrics, U={ARGS.users} I={ARGS.items} H={ARGS.hidden} train={len(train)} "
          f"eval={len(evals)} ks={KS}, threads={ARGS.threads} (OMP/OPENBLAS/MKL_NUM_THREADS, "
          f"XLA intra_op_parallelism_threads), jax {jax.__version__} on "
          f"{jax.devices()[0].platform}")
    print(f"data generation {data_s:.1f} s, peak RSS after data {rss_data:.0f} MiB")
    print(f"{'method':<24}{'chunk':>7}{'compile+first s':>17}{'steady median s':>17}"
          f"{'(CPU s)':>9}{'GEMM s':>8}{'(CPU s)':>9}{'eval/GEMM':>10}{'(CPU)':>7}"
          f"{'peak RSS MiB':>14}")
    for r in rows:
        label = f"{r['effective_chunk']}{'*' if r['chunk_size'] == 0 else ''}"
        print(f"{'ranking_metrics (jit)':<24}{label:>7}{r['first_call_s']:>17.2f}"
              f"{r['steady_median_s']:>17.2f}{r['steady_cpu_median_s']:>9.2f}"
              f"{r['gemm_median_s']:>8.2f}{r['gemm_cpu_median_s']:>9.2f}"
              f"{r['eval_over_gemm_wall']:>10.2f}{r['eval_over_gemm_cpu']:>7.2f}"
              f"{r['peak_rss_mib']:>14.0f}")
    print("* = chunk_size=None (the function's default); GEMM = the bare chunked score GEMM, "
          "same chunks, same run")
    print(f"{'numpy per-user loop':<24}{'-':>7}{'-':>17}{loop_all_s:>17.2f}{loop_all_cpu_s:>9.2f}"
          f"{peak_rss_mib():>14.0f}   (extrapolated from {len(sub)} users: {loop_s:.2f} s)")
    print(f"speed-up (loop / best steady): wall {loop_all_s / best:.1f}x, CPU time "
          f"{loop_all_cpu_s / best_cpu:.1f}x; max |metric difference| on the subsample: "
          f"{max_diff:.2e}")
    print("metrics (random embeddings):",
          {k: round(v, 5) for k, v in rows[-1]["metrics"].items()})
    if max_diff > 1e-4:
        sys.exit(f"ranking_metrics disagrees with the numpy loop by {max_diff}")

    out = pathlib.Path(ARGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(
        config=dict(vars(ARGS), ks=list(KS), train_pairs=len(train), eval_pairs=len(evals)),
        jax=jax.__version__, platform=platform.platform(), cpu_count=os.cpu_count(),
        data_generation_s=data_s, peak_rss_after_data_mib=rss_data, ranking_metrics=rows,
        numpy_loop=dict(users=len(sub), seconds=loop_s, cpu_seconds=loop_cpu_s,
                        extrapolated_all_users_s=loop_all_s,
                        extrapolated_all_users_cpu_s=loop_all_cpu_s, peak_rss_mib=peak_rss_mib()),
        speedup_loop_over_best=loop_all_s / best,
        speedup_cpu_loop_over_best=loop_all_cpu_s / best_cpu,
        max_metric_difference_on_subsample=max_diff,
    ), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
