"""Tests for metafusion_jax.training: atomic results, finiteness guard, writers, checkpoints."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.training import artifacts, checkpoints, writers


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
