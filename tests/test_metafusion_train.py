"""End-to-end tests of the Meta Fusion trainer: results keys and values, logs, resume, NaN path."""
import json
import os

import jax
import numpy as np
import pytest

from metafusion_jax.metafusion import train
from metafusion_jax.configs import metafusion as mf_configs


REQUIRED = ("meta_fusion", "stacking", "best_single", "indep_best_single", "indep_greedy",
            "simple_average", "weighted_average", "early_fusion", "late_fusion", "coop",
            "modality_1", "modality_2")


def tiny_config():
    config = mf_configs.get_config("smoke")
    config.data.n = 60                       # 38 / 10 / 12 rows
    config.num_seeds = 2
    config.cohort.mod_outs = [[0, 4], [0, 400]]   # 3 members: (4, 400), (4, 0), (0, 400)
    config.cohort.head_hiddens = [4]
    config.train.batch_size = 16
    config.report_both_b1 = True
    return config


def _comparable(results):
    return {k: v for k, v in results.items() if k != "timing"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, fast_compile_module):
    del fast_compile_module  # requested for its effect: XLA optimisations off for this module
    workdir = str(tmp_path_factory.mktemp("smoke"))
    return workdir, train.train_and_evaluate(tiny_config(), workdir)


def test_smoke_writes_results_logs_and_events(smoke_run):
    workdir, results = smoke_run
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        on_disk = json.load(f)
    assert _comparable(on_disk) == json.loads(json.dumps(_comparable(results)))
    for key in ("dataset", "setting", "seeds", "test", "rho_star", "best_cluster", "members",
                "timing", "config", "metric", "b1_arm"):
        assert key in results, key
    assert results["seeds"] == [1, 2] and results["metric"] == "mse"
    for key in REQUIRED:
        per_seed = np.asarray(results["per_seed"][key])
        assert per_seed.shape == (2,)
        # mean and standard error recomputed by hand from the per-seed values.
        assert results["test"][key] == pytest.approx(per_seed.mean())
        assert results["test"][key + "_se"] == pytest.approx(
            abs(per_seed[0] - per_seed[1]) / 2.0, rel=1e-6)
    assert set(results["rho_star"]) <= {0.0, 1.0}
    assert results["b1_arm"]["warm_start_b1"] is True
    # Best single is the member with the lowest validation loss at rho*, member by member.
    members = results["members"]
    for s in range(2):
        best = int(np.argmin(members["rho_star"]["val_loss"][s]))
        assert results["per_seed"]["best_single"][s] == pytest.approx(
            members["rho_star"]["test"][s][best])
        best0 = int(np.argmin(members["indep"]["val_loss"][s]))
        assert results["per_seed"]["indep_best_single"][s] == pytest.approx(
            members["indep"]["test"][s][best0])
    assert members["dims"] == [[4, 400], [4, 0], [0, 400]]
    # metrics.jsonl: 2 epochs per stage, 5 stages, steps 1..10, per-member curves.
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert "mutual/rho_1/val_task/member_02" in rows[2]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir))


def test_kill_and_resume_gives_identical_results(smoke_run, tmp_path, monkeypatch, fast_compile):
    _, uninterrupted = smoke_run
    workdir = str(tmp_path)

    def killed(ctx, done):
        raise KeyboardInterrupt("killed during the baselines stage")

    monkeypatch.setitem(train.STAGES, "baselines", killed)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(tiny_config(), workdir)
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    monkeypatch.undo()

    def must_not_run(ctx, done):
        raise AssertionError("a completed stage ran again after resume")

    for name in ("indep", "mutual", "b1_other"):
        monkeypatch.setitem(train.STAGES, name, must_not_run)
    resumed = train.train_and_evaluate(tiny_config(), workdir)
    assert _comparable(resumed) == _comparable(uninterrupted)
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        assert [json.loads(line)["step"] for line in f] == list(range(1, 11))


def test_non_finite_loss_raises_and_writes_nothing(tmp_path, fast_compile):
    config = tiny_config()
    config.num_seeds = 1
    config.train.learning_rate = 1e30
    with pytest.raises(FloatingPointError, match="non-finite"):
        train.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "results.json"))
    assert not os.listdir(os.path.join(tmp_path, "checkpoints", "latest"))


def test_resume_with_another_config_is_refused(smoke_run):
    workdir, _ = smoke_run
    config = tiny_config()
    config.train.epochs = 3
    with pytest.raises(ValueError, match="different config"):
        train.train_and_evaluate(config, workdir)


def test_summarise_hand_values():
    out = train.summarise({"a": [1.0, 2.0, 4.0], "b": [5.0]})
    assert out["a"] == pytest.approx(7.0 / 3.0)
    assert out["a_se"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1) / np.sqrt(3.0))
    assert out["b"] == 5.0 and out["b_se"] == 0.0
