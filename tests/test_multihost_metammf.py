"""Two real processes on localhost (CPU collectives through gloo) train the MetaMMF smoke config.

The binary runs with --coordinator_address/--num_processes/--process_id, one CPU device per
process (a 2-device global mesh); the reference is one process with 2 devices. Same results.json
(to float tolerance), written by process 0 only; checkpoints written by both together.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "experiments", "train_metammf.py")
FLAGS = ["--config=configs/metammf.py:smoke", "--config.num_epochs=2"]
TIMEOUT_S = 240


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_with_devices(n):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    return env


def launch(args, env):
    return subprocess.Popen([sys.executable, BINARY, *FLAGS, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc):
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"process timed out after {TIMEOUT_S} s:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    return out


def test_two_processes_match_one_process(tmp_path):
    port = free_port()
    multi = str(tmp_path / "multi")
    procs = [launch([f"--workdir={multi}", f"--coordinator_address=127.0.0.1:{port}",
                     "--num_processes=2", f"--process_id={i}"], env_with_devices(1))
             for i in range(2)]
    single = str(tmp_path / "single")
    reference = launch([f"--workdir={single}"], env_with_devices(2))
    outs = [finish(p) for p in procs]
    finish(reference)
    assert "test " in outs[0] and "test " not in outs[1]  # only process 0 prints and writes
    with open(os.path.join(single, "results.json"), encoding="utf-8") as f:
        one = json.load(f)
    with open(os.path.join(multi, "results.json"), encoding="utf-8") as f:
        two = json.load(f)
    assert two["best_epoch"] == one["best_epoch"]
    for split in ("val", "test"):
        assert set(two[split]) == set(one[split])
        for name, value in one[split].items():
            np.testing.assert_allclose(two[split][name], value, atol=1e-6, err_msg=name)
    with open(os.path.join(multi, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert [r["train/epoch"] for r in rows if "train/loss" in r] == [1.0, 2.0]
    saved = [os.listdir(os.path.join(d, "checkpoints", "latest")) for d in (multi, single)]
    assert saved[0] == saved[1] and len(saved[0]) == 1  # the same last step, written once
