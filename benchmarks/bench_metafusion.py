r"""Wall time of Meta Fusion cohort training: one jitted program vs a Python loop over members.

Work measured: setting 2.2 (n = 2000 -> 1280 train rows, PCA cohort of 24 members, head
[300, 200, 100], batch 64), all three rho runs [0, 0.99, 3] (rho=0, host clustering weights,
then both positive rho) for `--epochs` epochs, with best-validation-epoch tracking per member.

* stacked: what the trainer (`experiments/train_metafusion.py`) runs: `train.build_run` and
  `program.run_schedule` with `train.schedule_kwargs` (the rho=0 stage program, the host
  clustering weights and the rho>0 program, vmapped over rho and seeds, epochs in chunks of
  `checkpoint_every_epochs`; no checkpoints or predictions): for 1 seed and `--seeds` seeds.
* loop: the same work member by member, as the reference does it: every member is its own
  unpadded network with its own jitted forward and Adam step; per batch all M forwards run
  first (the peers), then M steps; validation per member per epoch. Python drives every call.

Threads: XLA CPU runs single-threaded (`--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1`, set below before jax is imported); the table states it. Both
arms also get the binaries' `xla_flags.apply_cpu_flags()`.
Warm-up (compile) is kept out of the timed runs: the stacked programs of both rho stages are
compiled first (`program.compile_stage` runs them for zero epochs, filling the cache the timed
call hits; its seconds are reported as `compile_*`), the loop's per-member functions by a
1-epoch loop run.
Medians over `--repeats` runs; the 10-seed loop is the sum of one run per seed (same shapes, so
nothing compiles again).
Writes benchmarks/results/metafusion.json.

    python benchmarks/bench_metafusion.py --quick     # 2 epochs, minutes on a 2-core CPU
    python benchmarks/bench_metafusion.py             # 30 epochs (the paper's)

Fixed costs (issue 10 goal 4): `--fixed_costs` times the WHOLE script instead
(`train.train_and_evaluate`, what experiments/train_metafusion.py runs: data, cohort, every stage
with checkpoints, baselines, Coop, ensembles, results.json) for setting 2.2, 1 seed, 10 epochs
(`--quick`: 2), each run in its own process pinned to core 0 (`taskset -c 0`, XLA single-
threaded): the persistent compilation cache off, on and empty (cold), on and filled by the run
before (warm). Reported: process wall time (imports included), the trainer's total_s, the
seconds and count of XLA compiles (jax.monitoring). Writes benchmarks/results/
metafusion_fixed_costs.json.

    python benchmarks/bench_metafusion.py --fixed_costs [--quick]
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                           " intra_op_parallelism_threads=1").strip()

from metafusion_jax.training.xla_flags import apply_cpu_flags  # noqa: E402

apply_cpu_flags()  # what the binaries run (YNNPACK batched-dot fusion off; see xla_flags.py)

import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from metafusion_jax.metafusion import cohort as cohort_lib  # noqa: E402
from metafusion_jax.configs import metafusion as mf_configs  # noqa: E402
from metafusion_jax.metafusion import inputs, placement, program, train, weights  # noqa: E402

_QUICK = flags.DEFINE_bool("quick", False, "2 epochs instead of --epochs.")
_EPOCHS = flags.DEFINE_integer("epochs", 30, "Epochs per rho run (paper: 30).")
_SEEDS = flags.DEFINE_integer("seeds", 10, "Seeds trained in one program.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Timed runs per 1-seed measurement (median).")
_OUT = flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "results",
                                               "metafusion.json"), "JSON output.")
_FIXED = flags.DEFINE_bool("fixed_costs", False, "Time the whole script, cache off/cold/warm.")
_WORKER = flags.DEFINE_string("worker", "", "Internal (--fixed_costs): workdir,cache_dir.")
_FIXED_OUT = os.path.join(os.path.dirname(__file__), "results", "metafusion_fixed_costs.json")


def fixed_cost_worker(spec):
    """One whole-script run in this process; prints its wall, compile seconds and count."""
    workdir, cache = spec.split(",", 1)
    compiles, hits = [], []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: compiles.append(secs)
        if name == "/jax/core/compile/backend_compile_duration" else None)
    jax.monitoring.register_event_listener(
        lambda name, **kw: hits.append(1) if name == "/jax/compilation_cache/cache_hits" else None)
    config = mf_configs.get_config("setting_2_2")
    config.train.epochs = 2 if _QUICK.value else 10
    config.compile_cache_dir = cache
    results = train.train_and_evaluate(config, workdir)
    print("RESULT " + json.dumps({"total_s": results["timing"]["total_s"],
                                  "timing": results["timing"], "programs": len(compiles),
                                  "cache_hits": len(hits),
                                  "compile_s": float(np.sum(compiles))}), flush=True)


def fixed_costs():
    """Three pinned whole-script runs: cache off, cold, warm; table + JSON."""
    import subprocess
    import sys
    import tempfile
    root = tempfile.mkdtemp(prefix="mf_fixed_")
    cache = os.path.join(root, "jax_cache")
    arms = {}
    for name, cache_dir in (("cache_off", ""), ("cache_cold", cache), ("cache_warm", cache)):
        cmd = ["taskset", "-c", "0", sys.executable, os.path.abspath(__file__),
               f"--worker={os.path.join(root, name)},{cache_dir}", f"--quick={_QUICK.value}"]
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode or not lines:
            raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
        arms[name] = dict(json.loads(lines[-1][7:]), process_wall_s=wall)
        print(f"{name}: process {wall:.1f} s, trainer {arms[name]['total_s']:.1f} s, "
              f"{arms[name]['programs']} programs, {arms[name]['cache_hits']} from the cache, "
              f"compile {arms[name]['compile_s']:.1f} s", flush=True)
    result = {"work": f"whole script, setting 2.2, 1 seed, {2 if _QUICK.value else 10} epochs",
              "threads": "taskset -c 0, XLA CPU single-threaded", "arms": arms,
              "reference_whole_script_s": 86.2, "target_s": 21.0}
    with open(_FIXED_OUT, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"{result['work']}; {result['threads']}")
    print("| persistent cache | process wall (s) | trainer total (s) | programs | from cache | "
          "compile (s) |")
    print("|---|---|---|---|---|---|")
    for name, a in arms.items():
        print(f"| {name[6:]} | {a['process_wall_s']:.1f} | {a['total_s']:.1f} | "
              f"{a['programs']} | {a['cache_hits']} | {a['compile_s']:.1f} |")
    off, warm = arms["cache_off"]["process_wall_s"], arms["cache_warm"]["process_wall_s"]
    print(f"reference whole script 86.2 s: {86.2 / off:.2f}x (cache off), "
          f"{86.2 / warm:.2f}x (warm cache); target 21 s")



def setup(config, num_seeds):
    """The trainer's run (data, cohort, programs, initial params [S, M, ...]) for seeds 1..S."""
    seeds = list(range(1, num_seeds + 1))
    config, datas = inputs.resolve(config, None, seeds)
    return train.build_run(config, datas, seeds)


def stacked_run(run):
    """The trainer's `program.run_schedule` (its kwargs from the config; no predictions)."""
    kwargs = dict(train.schedule_kwargs(run), predict=None)
    res = program.run_schedule(run.cohort.program, run.cohort.step, run.params0,
                               run.cohort.data, run.config.rho_list, **kwargs)
    return jax.block_until_ready(res.result.best_val)


def compile_stacked(run):
    """Compiles the rho=0 and rho>0 stage programs `run_schedule` calls; returns the seconds.

    Arguments built as `program.run_schedule` builds them (`stage_init`, fold_in keys, float32
    weights), so its calls hit the compiled cache (`program.compile_stage` runs zero epochs).
    """
    start = time.perf_counter()
    rhos = [float(r) for r in run.config.rho_list]
    opt0 = jax.vmap(run.cohort.step.init_opt)(run.params0)
    n_seeds, n_members = jax.tree.leaves(run.params0)[0].shape[:2]
    fold = jax.vmap(lambda k, r: jax.random.fold_in(k, r), in_axes=(0, None))
    for stage_rhos, idx in (([0.0], [0]), (rhos[1:], range(1, len(rhos)))):
        p, o = program.stage_init(run.params0, opt0, len(stage_rhos), warm=None)
        keys = jnp.stack([fold(run.keys, r) for r in idx], axis=1)
        w = jnp.ones((n_seeds, len(stage_rhos), n_members), jnp.float32)
        program.compile_stage(run.cohort.program, p, o, run.cohort.data, stage_rhos, w, keys,
                              placement=run.placement)
    return time.perf_counter() - start


def one_seed(run):
    """The same run restricted to its first seed (leaves [1, ...])."""
    first = lambda t: jax.tree.map(lambda a: a[:1], t)
    cohort = run.cohort._replace(data=first(run.cohort.data))
    return run._replace(seeds=run.seeds[:1], datas=run.datas[:1], cohort=cohort,
                        params0=first(run.params0), inputs=first(run.inputs),
                        keys=run.keys[:1], stack_keys=run.stack_keys[:1],
                        placement=placement.make_placement(run.config.mesh, 1))


def member_inputs(spec, xs):
    """Unpadded input of every member from the PCA layout: list of M arrays [N, F_c]."""
    out = []
    for dims_c, modes_c in zip(spec.dims, spec.modes):
        parts = []
        for m, (d, mode) in enumerate(zip(dims_c, modes_c)):
            raw_w = spec.modality_dims[m] if any(r[m] == "full" for r in spec.modes) else 0
            if mode == "full":
                parts.append(xs[m][:, :raw_w])
            elif mode == "latent":
                parts.append(xs[m][:, raw_w:raw_w + d])
        out.append(jnp.concatenate(parts, axis=1))
    return out


@functools.lru_cache(maxsize=None)
def member_functions(learning_rate):
    """Jitted forward / Adam step / validation of ONE unpadded member (compiled per width)."""
    tx = optax.adam(learning_rate)

    @jax.jit
    def fwd(p, x, idx):
        return cohort_lib.mlp_apply(p, x[idx])

    @jax.jit
    def step(p, o, x, y, idx, peers, wrow, rho):
        def loss(p):
            f = cohort_lib.mlp_apply(p, x[idx])
            div = jnp.mean((f[None] - peers) ** 2, axis=(1, 2))
            return jnp.mean((f - y[idx][:, None]) ** 2) + rho * jnp.sum(wrow * div)
        g = jax.grad(loss)(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o

    @jax.jit
    def val(p, x, y):
        return jnp.mean((cohort_lib.mlp_apply(p, x) - y[:, None]) ** 2)

    return tx, fwd, step, val


def loop_run(config, spec, x_tr, y_tr, x_va, y_va, key):
    """All rho runs of one seed, member by member (each member its own jitted functions)."""
    tx, fwd, step, val = member_functions(config.train.learning_rate)
    hidden, m = tuple(config.cohort.head_hiddens), spec.num_members
    init = [cohort_lib.init_mlp(jax.random.fold_in(key, c), (x_tr[c].shape[1], *hidden, 1))
            for c in range(m)]
    n, bs = y_tr.shape[0], config.train.batch_size
    w = np.ones(m, np.float32)
    best_by_rho = []
    for r, rho in enumerate(config.rho_list):
        params, opts = list(init), [tx.init(p) for p in init]
        wmat = jnp.asarray(w[None, :] * (1 - np.eye(m)) / w.sum(), jnp.float32)
        best = np.full(m, np.inf)
        for e in range(config.train.epochs):
            perm = np.random.default_rng((r, e)).permutation(n)
            for b in range(n // bs):
                idx = jnp.asarray(perm[b * bs:(b + 1) * bs])
                peers = jnp.stack([fwd(params[c], x_tr[c], idx) for c in range(m)])
                for c in range(m):
                    params[c], opts[c] = step(params[c], opts[c], x_tr[c], y_tr, idx, peers,
                                              wmat[c], rho)
            losses = np.array([float(val(params[c], x_va[c], y_va)) for c in range(m)])
            best = np.minimum(best, losses)   # (the best params would be copied here)
        if r == 0:
            w = weights.clustering_weights(best, seed=1).w
        best_by_rho.append(best)
    return np.stack(best_by_rho)


def timed(fn, repeats):
    """(median seconds, all seconds) of `repeats` calls of fn (already compiled)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def main(argv):
    del argv
    if _WORKER.value:
        return fixed_cost_worker(_WORKER.value)
    if _FIXED.value:
        return fixed_costs()
    config = mf_configs.get_config("setting_2_2")
    config.train.epochs = 2 if _QUICK.value else _EPOCHS.value
    run = setup(config, _SEEDS.value)
    config, spec, inputs, keys = run.config, run.spec, run.inputs, run.keys
    run1 = one_seed(run)
    rows = {}

    def record(name, value):
        rows[name] = value
        print(f"{name}: median {value[0]:.2f} s (runs {[round(t, 2) for t in value[1]]})",
              flush=True)

    def loop_seed(s, cfg=config):
        pick = lambda split: member_inputs(spec, [x[s] for x in inputs[f"x_{split}"]])
        return functools.partial(loop_run, cfg, spec, pick("train"), inputs["y_train"][s],
                                 pick("val"), inputs["y_val"][s], keys[s])

    compile_s = {"stacked_1_seed": compile_stacked(run1)}
    record("stacked_1_seed", timed(lambda: stacked_run(run1), _REPEATS.value))
    warm = config.copy_and_resolve_references()
    warm.train.epochs = 1
    start = time.perf_counter()
    loop_seed(0, warm)()
    compile_s["loop_1_epoch_warm_up"] = time.perf_counter() - start
    record("loop_1_seed", timed(loop_seed(0), _REPEATS.value))
    compile_s[f"stacked_{_SEEDS.value}_seeds"] = compile_stacked(run)
    record(f"stacked_{_SEEDS.value}_seeds", timed(lambda: stacked_run(run), 1))
    # Same shapes as seed 0: already compiled, so one timed run per seed.
    seed_times = [timed(loop_seed(s), 1)[0] for s in range(_SEEDS.value)]
    record(f"loop_{_SEEDS.value}_seeds", (float(np.sum(seed_times)), seed_times))

    s = _SEEDS.value
    result = {
        "work": f"setting 2.2, {spec.num_members} members x {len(config.rho_list)} rho x "
                f"{config.train.epochs} epochs, 1280 train rows, batch 64",
        "threads": "XLA CPU single-threaded (xla_cpu_multi_thread_eigen=false, "
                   "intra_op_parallelism_threads=1)",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "device": str(jax.devices()[0]), "machine": platform.processor() or platform.machine(),
        "cpus_visible": len(os.sched_getaffinity(0)), "epochs": config.train.epochs,
        "seconds_median": {k: v[0] for k, v in rows.items()},
        "seconds_all": {k: v[1] for k, v in rows.items()},
        "warm_up_seconds": compile_s,
        "speedup_1_seed": rows["loop_1_seed"][0] / rows["stacked_1_seed"][0],
        f"speedup_{s}_seeds": rows[f"loop_{s}_seeds"][0] / rows[f"stacked_{s}_seeds"][0],
    }
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"{result['work']}; {result['threads']}; {result['device']}")
    print("| seeds | stacked program (s) | member loop (s) | loop / stacked |")
    print("|---|---|---|---|")
    for n_s, key in ((1, "1_seed"), (s, f"{s}_seeds")):
        a, b = rows[f"stacked_{key}"][0], rows[f"loop_{key}"][0]
        print(f"| {n_s} | {a:.2f} | {b:.2f} | {b / a:.1f}x |")


if __name__ == "__main__":
    app.run(main)
