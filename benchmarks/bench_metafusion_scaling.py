r"""Meta Fusion on a device mesh: a 10-seed setting-2.2 program on 2 CPU devices vs 1 device.

Work: setting 2.2 (1280 train rows, PCA cohort of 24 members, head [300, 200, 100], batch 64),
`--seeds` seeds in one program, rho = 0 then both positive rho (host clustering weights in
between), `--epochs` epochs; training only (no predictions, checkpoints or baselines). It drives
the trainer's own builders: `train.build_run` (the mesh of `config.mesh`, seeds over "runs",
params created sharded) and `program.run_schedule` with `train.schedule_kwargs`.

Arms, each in its own subprocess (XLA reads its flags once per process):

  2dev_2cores    --xla_force_host_platform_device_count=2, both cores (5 seeds per device)
  1dev_1core     1 device, pinned with `taskset -c 0`
  1dev_2cores    1 device, both cores (XLA runs independent ops of one device on both)

All arms also get the binaries' `xla_flags.apply_cpu_flags()`. Compilation is kept out of the
timed runs (`program.compile_stage` of both stages first; its seconds are reported). Medians of
`--repeats` timed runs. Targets (issue 9): 2dev_2cores >= 1.5x faster than 1dev_1core and no
slower than 1dev_2cores. Writes benchmarks/results/metafusion_scaling.json.

    python benchmarks/bench_metafusion_scaling.py --quick   # 4 seeds, 1 epoch, 8 members: < 1 min
    python benchmarks/bench_metafusion_scaling.py           # 10 seeds, 10 epochs
"""
import json
import os
import platform
import subprocess
import sys
import time

from absl import app, flags

_QUICK = flags.DEFINE_bool("quick", False, "4 seeds, 1 epoch, n = 1000, 8 members (< 1 min).")
_SEEDS = flags.DEFINE_integer("seeds", 10, "Seeds in the one program.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Epochs per rho run.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per arm (median).")
_WORKER = flags.DEFINE_string("worker", "", "Internal: run one arm in this process.")
_ARMS = flags.DEFINE_list("arms", ["2dev_2cores", "2dev_2cores_pool", "1dev_1core", "1dev_2cores"],
                          "Arms to run (the ratios need 2dev_2cores, 1dev_1core, 1dev_2cores).")
_OUT = flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "results",
                                               "metafusion_scaling.json"), "JSON output.")

ARMS = (  # name, device count, pinned to core 0, one thread per device
    ("2dev_2cores", 2, False, True),
    ("2dev_2cores_pool", 2, False, False),
    ("1dev_1core", 1, True, False),
    ("1dev_2cores", 1, False, False),
)
# One thread per device: --xla_cpu_multi_thread_eigen=false. Without it every fake device's ops
# also spread over the shared intra-op pool, and two devices x two threads contend for 2 cores.
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def _settings():
    if _QUICK.value:
        return 4, 1, 1000, 1
    return _SEEDS.value, _EPOCHS.value, 0, _REPEATS.value


def worker(name):
    """One arm: build the trainer's run on this process's devices, compile, time."""
    from metafusion_jax.training.xla_flags import apply_cpu_flags
    apply_cpu_flags()
    import jax
    import jax.numpy as jnp
    import numpy as np
    from metafusion_jax.configs import metafusion as mf_configs
    from metafusion_jax.metafusion import inputs, program, train

    n_seeds, epochs, n, repeats = _settings()
    config = mf_configs.get_config("setting_2_2")
    config.train.epochs, config.data.n, config.num_seeds = epochs, n, n_seeds
    if _QUICK.value:                               # 8 members: compiles in seconds
        config.cohort.mod_outs = ((0, 60, 120), (0, 60, 120))
    config.compile_cache_dir = ""                  # compile here, every arm alike
    seeds = list(range(1, n_seeds + 1))
    config, datas = inputs.resolve(config, None, seeds)
    run = train.build_run(config, datas, seeds)
    place = run.placement
    kwargs = dict(train.schedule_kwargs(run), predict=None)

    start = time.perf_counter()
    rhos = [float(r) for r in config.rho_list]
    opt0 = jax.vmap(run.cohort.step.init_opt)(run.params0)
    n_members = run.spec.num_members
    fold = jax.vmap(lambda k, r: jax.random.fold_in(k, r), in_axes=(0, None))
    for stage_rhos, idx in (([0.0], [0]), (rhos[1:], range(1, len(rhos)))):
        p, o = program.stage_init(run.params0, opt0, len(stage_rhos), warm=None)
        keys = jnp.stack([fold(run.keys, r) for r in idx], axis=1)
        w = jnp.ones((place.padded, len(stage_rhos), n_members), jnp.float32)
        program.compile_stage(run.cohort.program, p, o, run.cohort.data, stage_rhos, w, keys,
                              placement=place)
    compile_s = time.perf_counter() - start

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        res = program.run_schedule(run.cohort.program, run.cohort.step, run.params0,
                                   run.cohort.data, config.rho_list, **kwargs)
        np.asarray(res.result.best_val)
        times.append(time.perf_counter() - start)
    print("RESULT " + json.dumps({
        "arm": name, "devices": len(jax.devices()), "mesh": dict(place.mesh.shape),
        "cpus": sorted(os.sched_getaffinity(0)), "compile_s": compile_s,
        "seconds": float(np.median(times)), "seconds_all": times,
        "best_val_mean": float(np.mean(res.result.best_val))}), flush=True)


def run_arm(name, devices, pinned, one_thread):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices}" +
                        (f" {ONE_THREAD}" if one_thread else "")).strip()
    cmd = [sys.executable, os.path.abspath(__file__), f"--worker={name}",
           f"--quick={_QUICK.value}", f"--seeds={_SEEDS.value}", f"--epochs={_EPOCHS.value}",
           f"--repeats={_REPEATS.value}"]
    if pinned:
        cmd = ["taskset", "-c", "0"] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"arm {name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv):
    del argv
    if _WORKER.value:
        worker(_WORKER.value)
        return
    n_seeds, epochs, n, repeats = _settings()
    arms = {}
    for name, devices, pinned, one_thread in ARMS:
        if name in _ARMS.value:
            arms[name] = run_arm(name, devices, pinned, one_thread)
            print(f"{name}: median {arms[name]['seconds']:.2f} s, compile "
                  f"{arms[name]['compile_s']:.1f} s", flush=True)
    if not {"2dev_2cores", "1dev_1core", "1dev_2cores"} <= set(arms):
        return                                      # a partial --arms run: no ratios
    two = arms["2dev_2cores"]["seconds"]
    result = {
        "work": f"setting 2.2, {n_seeds} seeds x {8 if _QUICK.value else 24} members x 3 rho x "
                f"{epochs} epochs, "
                f"n = {n or 2000}, batch 64, training only",
        "machine": platform.processor() or platform.machine(),
        "cpus_visible": len(os.sched_getaffinity(0)), "repeats": repeats, "arms": arms,
        "speedup_vs_1dev_1core": arms["1dev_1core"]["seconds"] / two,
        "speedup_vs_1dev_2cores": arms["1dev_2cores"]["seconds"] / two,
        "targets": {"vs_1dev_1core": 1.5, "vs_1dev_2cores": 1.0},
    }
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(result["work"])
    print("| arm | devices | cores | threads / device | median (s) | compile (s) | 1dev_1core / arm |")
    print("|---|---|---|---|---|---|---|")
    for name, devices, pinned, one_thread in ARMS:
        if name not in arms:
            continue
        a = arms[name]
        print(f"| {name} | {devices} | {1 if pinned else 2} | {1 if one_thread else 'pool'} | "
              f"{a['seconds']:.2f} | "
              f"{a['compile_s']:.1f} | {arms['1dev_1core']['seconds'] / a['seconds']:.2f}x |")
    print(f"2 devices vs 1 pinned device: {result['speedup_vs_1dev_1core']:.2f}x (target 1.5x); "
          f"vs 1 device on 2 cores: {result['speedup_vs_1dev_2cores']:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    app.run(main)
