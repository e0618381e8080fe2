"""Two real processes on localhost (CPU collectives through gloo) run the Meta Fusion binary on a
shrunk smoke config: process 0 alone writes the logs and results.json, both write the
checkpoints, and results.json equals the one of a single process (to float tolerance)."""
import json
import os
import socket
import subprocess
import sys

import pytest

from metafusion_jax.configs import metafusion as mf_configs
from metafusion_jax.metafusion import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ("--config=configs/metafusion.py:smoke", "--config.data.n=60",
         "--config.cohort.mod_outs=((0, 4), (0, 400))", "--config.cohort.head_hiddens=(4,)",
         "--config.train.batch_size=16", "--config.checkpoint_every_epochs=1",
         "--config.baselines.run=False", "--config.baselines.coop=False",
         "--config.compile_cache_dir=")


def _smoke_config():
    """The config of FLAGS, built in Python."""
    config = mf_configs.get_config("smoke")
    config.data.n, config.cohort.mod_outs = 60, ((0, 4), (0, 400))
    config.cohort.head_hiddens, config.train.batch_size = (4,), 16
    config.checkpoint_every_epochs, config.compile_cache_dir = 1, ""
    config.baselines.run = config.baselines.coop = False
    return config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(workdir, extra=()):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    cmd = [sys.executable, "experiments/train_metafusion.py", *FLAGS, f"--workdir={workdir}",
           *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=240):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"process timed out:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    return out


def test_two_processes_match_one(tmp_path, fast_compile):
    port, multi = _free_port(), str(tmp_path / "two")
    procs = [_launch(multi, (f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                             f"--process_id={i}")) for i in range(2)]
    # The one-process reference in this process (while the two run): 1 seed -> 1 device.
    train.train_and_evaluate(_smoke_config(), str(tmp_path / "one"))
    outs = [_finish(p) for p in procs]
    assert "results.json" in outs[0] and "results.json" not in outs[1]   # only 0 prints
    with open(os.path.join(multi, "metrics.jsonl"), encoding="utf-8") as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2, 3, 4]   # written once
    assert sorted(os.listdir(os.path.join(multi, "checkpoints", "latest")))[-1] == "4"
    results = {}
    for name in ("two", "one"):
        with open(tmp_path / name / "results.json", encoding="utf-8") as f:
            results[name] = json.load(f)
    two, one = results["two"], results["one"]
    assert two["rho_star"] == one["rho_star"] and two["best_cluster"] == one["best_cluster"]
    for key, value in one["test"].items():
        assert two["test"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
