r"""Wall time of the two main jobs, before and after the speed work (issue 10 goal 5), side by side.

The jobs are the binaries themselves, exactly as a user runs them:

  metammf_ml100k   README command (1)'s job: experiments/train_metammf.py on configs/metammf.py:ml100k
                   (MetaMMF-GCN dense, real MovieLens-100k, 60 epochs)
  metafusion_2_2   experiments/train_metafusion.py on configs/metafusion.py:setting_2_2 (1 seed,
                   30 epochs, the whole script: data, baselines, Coop, cohort, ensembles)

"before" is a checkout of an older commit (default eea30e9, the last one before the graph kernel,
the ranking kernel and the Meta Fusion mesh/cache work), made with `git worktree add`; "after" is
this checkout. Each pair runs at the same time, one job pinned to core 0 and the other to core 1
(`taskset`; XLA on one thread: `--xla_cpu_multi_thread_eigen=false`), so both see the same
machine load (with --swap the pair runs again with the cores swapped and each arm reports the
mean of its two runs). The "after" Meta Fusion job gets a fresh, empty persistent compilation cache (cold);
a third run of it alone on core 0 with that cache filled (warm) shows what the cache saves.

    git worktree add /tmp/before eea30e9
    python benchmarks/bench_before_after.py --before=/tmp/before

Prints a table and writes benchmarks/results/before_after.json.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
JOBS = {
    "metammf_ml100k": ("experiments/train_metammf.py", "configs/metammf.py:ml100k"),
    "metafusion_2_2": ("experiments/train_metafusion.py", "configs/metafusion.py:setting_2_2"),
}
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def start(tree, job, core, workdir, cache=None):
    """Starts one binary from checkout `tree`, pinned to `core`; returns (process, start time)."""
    script, config = JOBS[job]
    env = dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS="cpu",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + ONE_THREAD).strip())
    if cache is not None:
        env["XDG_CACHE_HOME"] = cache          # where "auto" puts the compilation cache
    cmd = ["taskset", "-c", str(core), sys.executable, os.path.join(tree, script),
           f"--config={os.path.join(tree, config)}", f"--workdir={workdir}"]
    log = open(workdir + ".log", "w", encoding="utf-8")
    return subprocess.Popen(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT), \
        time.perf_counter(), log


def finish(proc, t0, log, workdir):
    """Waits for one job; its wall time ends when it exits (`wait_all` polls several)."""
    code = proc.wait()
    return _result(code, time.perf_counter() - t0, log, workdir)


def _result(code, wall, log, workdir):
    log.close()
    if code != 0:
        with open(workdir + ".log", encoding="utf-8") as f:
            raise RuntimeError(f"{workdir} failed ({code}):\n{f.read()[-3000:]}")
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    return {"wall_s": wall, "timing": results.get("timing")}


def wait_all(runs):
    """{arm: (workdir, proc, t0, log)} -> {arm: result}, each wall time taken when that job
    exits (not when the other one does)."""
    ended = {}
    while len(ended) < len(runs):
        for arm, (workdir, proc, t0, log) in runs.items():
            if arm not in ended and proc.poll() is not None:
                ended[arm] = (proc.returncode, time.perf_counter() - t0)
        time.sleep(0.05)
    return {arm: _result(code, wall, runs[arm][3], runs[arm][0])
            for arm, (code, wall) in ended.items()}


def pair(before, job, scratch, tag, cores, cache):
    """Runs before and after at once on the two given cores."""
    runs = {}
    for arm, tree, core in (("before", before, cores[0]), ("after", ROOT, cores[1])):
        workdir = os.path.join(scratch, f"{job}_{arm}_{tag}")
        runs[arm] = (workdir,) + start(tree, job, core, workdir,
                                       cache=None if arm == "before" else cache)
    return wait_all(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="checkout of the older commit")
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--swap", action="store_true", help="a second pair, cores swapped")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "before_after.json"))
    args = parser.parse_args()
    commit = lambda tree: subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True).stdout.strip()
    scratch = tempfile.mkdtemp(prefix="before_after_")
    out = {"before": commit(args.before), "after": commit(ROOT), "jobs": {}}
    try:
        for job in args.jobs.split(","):
            cache = os.path.join(scratch, f"cache_{job}")
            pairs = [pair(args.before, job, scratch, "a", (0, 1), cache)]
            if args.swap:
                shutil.rmtree(cache, ignore_errors=True)      # the second "after" is cold too
                pairs.append(pair(args.before, job, scratch, "b", (1, 0), cache))
            row = {arm: {"wall_s": sum(p[arm]["wall_s"] for p in pairs) / len(pairs),
                         "runs": [p[arm] for p in pairs]} for arm in ("before", "after")}
            if job == "metafusion_2_2":                        # the cache is full now: warm run
                workdir = os.path.join(scratch, f"{job}_after_warm")
                row["after_warm"] = finish(*start(ROOT, job, 0, workdir, cache=cache)[:3],
                                           workdir)
            row["speedup"] = row["before"]["wall_s"] / row["after"]["wall_s"]
            out["jobs"][job] = row
            print(f"{job}: before {row['before']['wall_s']:.1f} s, after "
                  f"{row['after']['wall_s']:.1f} s ({row['speedup']:.2f}x)"
                  + (f", after with a warm cache {row['after_warm']['wall_s']:.1f} s"
                     if "after_warm" in row else ""), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
    print(f"\nbefore = {out['before']}, after = {out['after']}; one core and one XLA thread each\n")
    print("| job | before s | after s | before / after | after, warm cache s |")
    print("|---|---|---|---|---|")
    for job, row in out["jobs"].items():
        warm = f"{row['after_warm']['wall_s']:.1f}" if "after_warm" in row else "-"
        print(f"| {job} | {row['before']['wall_s']:.1f} | {row['after']['wall_s']:.1f} | "
              f"{row['speedup']:.2f}x | {warm} |")


if __name__ == "__main__":
    main()
