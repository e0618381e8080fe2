"""Tests for metafusion_jax.training: atomic results, finiteness guard, writers, checkpoints."""
import glob
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.training import artifacts, checkpoints, writers
from reliability import bad_input


def test_write_json_atomic_roundtrip(tmp_path):
    path = tmp_path / "results.json"
    artifacts.write_json_atomic(str(path), {"a": np.float32(1.5), "b": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2]}


def test_write_json_atomic_refuses_nan_and_keeps_old_file(tmp_path):
    path = tmp_path / "results.json"
    artifacts.write_json_atomic(str(path), {"ok": 1})
    with pytest.raises(ValueError):
        artifacts.write_json_atomic(str(path), {"bad": float("nan")})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left


def test_check_finite_names_bad_metric():
    artifacts.check_finite({"loss": 0.3}, "step 1")
    with pytest.raises(FloatingPointError, match="step 7.*loss"):
        artifacts.check_finite({"loss": float("inf"), "acc": 0.1}, "step 7")


def test_metric_writer_jsonl_and_truncate(tmp_path):
    w = writers.MetricWriter(str(tmp_path), tensorboard=True)
    for s in range(5):
        w.write_scalars(s, {"loss": 1.0 / (s + 1)})
    w.close()
    rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[3]["loss"] == pytest.approx(0.25)
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path))
    w2 = writers.MetricWriter(str(tmp_path), tensorboard=False)
    w2.truncate_after(2)
    assert [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")] == [0, 1, 2]


def test_checkpoints_latest_and_best_roundtrip(tmp_path):
    ck = checkpoints.RunCheckpoints(str(tmp_path))
    assert ck.restore_latest({"w": jnp.zeros(2)}) is None
    ck.save_latest(1, {"w": jnp.array([1.0, 2.0])}, {"epoch": 1})
    ck.save_best(1, {"w": jnp.array([1.0, 2.0])}, {"epoch": 1, "val": 0.2})
    ck.save_latest(2, {"w": jnp.array([3.0, 4.0])}, {"epoch": 2})
    ck.close()
    ck = checkpoints.RunCheckpoints(str(tmp_path))
    latest = ck.restore_latest({"w": jnp.zeros(2)})
    best = ck.restore_best({"w": jnp.zeros(2)})
    assert latest.step == 2 and latest.meta == {"epoch": 2}
    np.testing.assert_array_equal(latest.state["w"], [3.0, 4.0])
    assert best.step == 1 and best.meta["val"] == 0.2
    np.testing.assert_array_equal(best.state["w"], [1.0, 2.0])
    ck.close()


# ---- issue #13: run folders, stale logs, damaged checkpoints, non-finite params -------------

def test_prepare_workdir_creates_and_returns_a_str(tmp_path):
    path = tmp_path / "a" / "b"
    assert artifacts.prepare_workdir(path) == str(path)
    assert path.is_dir() and list(path.iterdir()) == []  # the write probe is gone
    assert artifacts.prepare_workdir(str(path)) == str(path)  # an existing folder is fine


def test_prepare_workdir_refuses_a_file_and_a_path_below_one(tmp_path):
    path = tmp_path / "run"
    path.write_text("x")
    with bad_input("Run folder (both trainers): --workdir is a file",
                   match=r"workdir .*run is a file, not a folder"):
        artifacts.prepare_workdir(path)
    with bad_input("Run folder (both trainers): --workdir below a file",
                   match=r"workdir .*run/sub could not be created \(\w+Error: .*\)\. Pass a "
                         r"--workdir whose parents are folders"):
        artifacts.prepare_workdir(path / "sub")


def test_prepare_workdir_refuses_an_unwritable_folder(tmp_path, monkeypatch):
    def no_write(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(artifacts.tempfile, "mkstemp", no_write)
    with bad_input("Run folder (both trainers): --workdir not writable",
                   match=r"workdir .* is not writable \(PermissionError: Permission denied\)\. "
                         r"Make it writable \(e.g. chmod u\+w"):
        artifacts.prepare_workdir(tmp_path)


def test_check_finite_tree_names_the_bad_leaves():
    tree = {"a": jnp.ones(3), "b": {"c": jnp.array([1.0, jnp.nan])}, "n": jnp.arange(2)}
    artifacts.check_finite_tree({"a": jnp.ones(3), "n": jnp.arange(2)}, "params")
    with bad_input("Training loops: NaN parameters before a save", exception=FloatingPointError,
                   match=r"non-finite values in the parameters after epoch 4: \['b'\]\['c'\]\. "
                         r"Nothing was saved"):
        artifacts.check_finite_tree(tree, "parameters after epoch 4")


def test_open_run_log_fresh_sets_old_logs_aside(tmp_path, caplog):
    w = writers.MetricWriter(str(tmp_path))
    w.write_scalars(7, {"loss": 1.0})
    w.close()
    (tmp_path / "results.json").write_text("{}")
    with caplog.at_level("WARNING"):
        w = writers.open_run_log(str(tmp_path), None, also_stale=("results.json",))
    assert "has logs but no checkpoint to resume from" in caplog.text
    w.write_scalars(1, {"loss": 0.5})
    w.close()
    assert [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")] == [1]
    (stale,) = (tmp_path / "stale_logs").iterdir()
    names = sorted(p.name for p in stale.iterdir())
    assert names[0].startswith("events.out.tfevents") and names[1:] == ["metrics.jsonl",
                                                                        "results.json"]
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("events.")]) == 1
    # A second fresh start gets its own folder; nothing to move: None.
    writers.open_run_log(str(tmp_path), None, tensorboard=False).close()
    assert len(list((tmp_path / "stale_logs").iterdir())) == 2
    assert writers.set_aside_stale_logs(str(tmp_path / "stale_logs")) is None


def test_open_run_log_resumed_keeps_the_log_up_to_the_step(tmp_path):
    w = writers.MetricWriter(str(tmp_path), tensorboard=False)
    for s in range(4):
        w.write_scalars(s, {"loss": 1.0})
    w.close()
    w = writers.open_run_log(str(tmp_path), 2, tensorboard=False)
    w.close()
    assert [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")] == [0, 1, 2]
    assert not (tmp_path / "stale_logs").exists()


def _saved(tmp_path):
    ck = checkpoints.RunCheckpoints(str(tmp_path))
    ck.save_latest(3, {"w": jnp.arange(64.0)}, {"epoch": 3})
    ck.close()
    return str(tmp_path / "checkpoints" / "latest" / "3")


def test_damaged_checkpoint_is_one_line(tmp_path):
    step_dir = _saved(tmp_path)
    for path in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True):
        with open(path, "r+b") as f:
            f.truncate(5)
    ck = checkpoints.RunCheckpoints(str(tmp_path))
    assert ck.latest_meta().meta == {"epoch": 3}  # meta reads without the arrays
    for like in ({"w": jnp.zeros(64)}, None):  # MetaMMF's restore and Meta Fusion's (like=None)
        with bad_input("Checkpoints (both trainers): a truncated array file",
                       match=rf"checkpoint {step_dir} could not be read \(.*\); it is damaged "
                             r"or incomplete. Delete the checkpoints folder "):
            ck.restore_latest(like)
    ck.close()


def test_corrupt_meta_is_one_line(tmp_path):
    step_dir = _saved(tmp_path)
    with open(os.path.join(step_dir, "meta", "metadata"), "w", encoding="utf-8") as f:
        f.write("{not json")
    ck = checkpoints.RunCheckpoints(str(tmp_path))
    with bad_input("Checkpoints (both trainers): corrupt meta JSON",
                   match=rf"checkpoint {step_dir} could not be read \(JSONDecodeError"):
        ck.latest_meta()
    ck.close()
