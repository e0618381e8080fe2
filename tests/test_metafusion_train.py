"""End-to-end tests of the Meta Fusion trainer: results keys and values, the one schedule it runs
(`program.run_schedule`), the B1 warm start, weights, kill-and-resume inside a stage, data=."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.configs import metafusion as mf_configs
from metafusion_jax.data.multiview.container import MultiModalData, Split
from metafusion_jax.metafusion import inputs, program, train, weights
from metafusion_jax.training.checkpoints import RunCheckpoints

REQUIRED = ("meta_fusion", "stacking", "best_single", "indep_best_single", "indep_greedy",
            "simple_average", "weighted_average", "early_fusion", "late_fusion", "coop",
            "modality_1", "modality_2")


def tiny_config():
    config = mf_configs.get_config("smoke")
    config.data.n = 60                       # 38 / 10 / 12 rows
    config.num_seeds = 2
    config.cohort.mod_outs = ((0, 4), (0, 400))   # 3 members: (4, 400), (4, 0), (0, 400)
    config.cohort.head_hiddens = (4,)
    config.train.batch_size = 16
    config.report_both_b1 = True
    return config


def _comparable(results):
    # figures: drawn only where config.figures is on (the module's smoke run); run_info: the
    # git commit may differ between runs of a test session's checkout.
    return {k: v for k, v in results.items()
            if k not in ("timing", "config", "figures", "run_info")}


def _stage_spy(calls):
    """A `program.run_stage` that records (name, initial params, initial Adam, progress, record)."""
    real = program.run_stage

    def spy(prog, params, opt_state, *args, name="stage", **kwargs):
        record = real(prog, params, opt_state, *args, name=name, **kwargs)
        n = record.best_val.shape[0]     # the real seeds (the mesh pads them to its size)
        host = lambda t: None if t is None else jax.tree.map(lambda a: np.asarray(a)[:n], t)
        calls.append((name, host(params), host(opt_state), kwargs.get("progress"), record))
        return record
    return spy


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, fast_compile_module):
    del fast_compile_module  # requested for its effect: XLA optimisations off for this module
    workdir, calls = str(tmp_path_factory.mktemp("smoke")), []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(program, "run_stage", _stage_spy(calls))
        config = tiny_config()
        config.figures = True
        results = train.train_and_evaluate(config, workdir)
    return workdir, results, calls


def test_smoke_writes_results_logs_and_events(smoke_run):
    workdir, results, _ = smoke_run
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        on_disk = json.load(f)
    assert _comparable(on_disk) == json.loads(json.dumps(_comparable(results)))
    for key in ("dataset", "setting", "seeds", "test", "rho_star", "best_cluster", "members",
                "timing", "config", "metric", "b1_arm"):
        assert key in results, key
    assert results["seeds"] == [1, 2] and results["metric"] == "mse"
    # The cohort figures are drawn into workdir/figures/ and named in results.json.
    assert len(on_disk["figures"]) == 4
    for rel in on_disk["figures"].values():
        assert rel.startswith("figures/") and rel.endswith(".png")
        assert os.path.getsize(os.path.join(workdir, rel)) > 5000
    assert on_disk["run_info"]["device_count"] == jax.device_count()
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


def test_trainer_equals_run_schedule_called_directly(smoke_run):
    _, results, _ = smoke_run
    config = tiny_config()
    seeds = [1, 2]
    config, datas = inputs.resolve(config, None, seeds)
    init_keys, keys, _ = (jnp.stack(k) for k in zip(*[jax.random.split(jax.random.key(s), 3)
                                                       for s in seeds]))
    _, model, params0, cohort_inputs = inputs.build_cohort(config, datas, init_keys)
    progs = train.make_cohort_programs(config, model.apply, cohort_inputs)

    def weight_fn(seed):
        return lambda b: weights.clustering_weights(b, seed=seed)[:2]
    out = program.run_schedule(progs.program, progs.step, params0, progs.data, (0.0, 1.0),
                               keys=keys, weight_fn=[weight_fn(s) for s in seeds],
                               warm_start=False, report_both_b1=True)
    np.testing.assert_array_equal(results["members"]["indep"]["val_loss"],
                                  out.result.best_val[:, 0])
    star = out.rho_star_index
    np.testing.assert_array_equal(results["members"]["rho_star"]["val_loss"],
                                  out.result.best_val[np.arange(2), star])
    assert results["rho_star"] == out.rho_star.tolist()
    assert results["b1_arm"]["rho_star"] == np.asarray([0.0, 1.0])[out.b1_rho_star_index].tolist()
    np.testing.assert_array_equal(results["weights"], out.weights)
    assert results["best_cluster"] == [c.tolist() for c in out.clusters]


def test_b1_arm_starts_from_the_rho0_best_params_and_adam_state(smoke_run):
    _, _, calls = smoke_run
    by_name = {name: (p, o, record) for name, p, o, _, record in calls}
    assert list(by_name) == ["indep", "mutual", "b1_other", "baselines", "coop"]
    p0, o0, indep = by_name["indep"]
    # warm_start_b1=False: "mutual" starts from the initial params and a fresh Adam state ...
    p_mut, o_mut, _ = by_name["mutual"]
    jax.tree.map(np.testing.assert_array_equal, (p_mut, o_mut), (p0, o0))
    assert all(int(c) == 0 for c in np.ravel(o_mut[0].count))
    # ... and the other arm from the rho=0 best params AND the Adam state of their best epoch.
    p_b1, o_b1, _ = by_name["b1_other"]
    jax.tree.map(np.testing.assert_array_equal, (p_b1, o_b1), tuple(indep.warm))
    best_epoch = np.argmin(indep.val_curve[:, 0], axis=1)                    # [S, M]
    batches = -(-38 // 16)
    np.testing.assert_array_equal(o_b1[0].count[:, 0], (best_epoch + 1) * batches)
    assert not np.array_equal(p_b1["head"][0]["w"], p0["head"][0]["w"])


def test_kill_inside_stages_and_resume_gives_identical_results(smoke_run, tmp_path, monkeypatch,
                                                               fast_compile):
    """checkpoint_every_epochs=1 (chunks) vs the fixture's 10 (one chunk): same numbers, also
    after kills right after the first chunk of "mutual" and of "coop"."""
    _, uninterrupted, _ = smoke_run
    workdir, config = str(tmp_path), tiny_config()
    config.checkpoint_every_epochs = 1
    real_save = RunCheckpoints.save_latest

    def kill_after(stage):
        def save(self, step, state, meta):
            real_save(self, step, state, meta)
            if (meta["progress"] or {}).get("stage") == stage:
                self.latest.wait_until_finished()
                raise KeyboardInterrupt(f"killed inside {stage}")
        return save

    # (stage to kill in, stages that must not run again, (stage, epoch) resumed from progress)
    legs = (("mutual", set(), []), ("coop", {"indep"}, [("mutual", 1)]))
    for stage, skipped, resumed_at in legs:
        monkeypatch.setattr(RunCheckpoints, "save_latest", kill_after(stage))
        calls = []
        monkeypatch.setattr(program, "run_stage", _stage_spy(calls))
        with pytest.raises(KeyboardInterrupt):
            train.train_and_evaluate(config, workdir)
        assert not os.path.exists(os.path.join(workdir, "results.json"))
        assert not skipped & {c[0] for c in calls}, "a finished stage ran again"
        assert [(c[0], c[3].epoch) for c in calls if c[3] is not None] == resumed_at
        monkeypatch.undo()
    calls = []
    monkeypatch.setattr(program, "run_stage", _stage_spy(calls))
    resumed = train.train_and_evaluate(config, workdir)
    assert [(c[0], c[3].epoch) for c in calls] == [("coop", 1)]
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
    workdir, _, _ = smoke_run
    config = tiny_config()
    config.train.epochs = 3
    with pytest.raises(ValueError, match=r"different run \(train.epochs: saved 2, now 3\)"):
        train.train_and_evaluate(config, workdir)


# ----------------------------------------------------------------- data= (your own arrays)


def _toy_data(seed, task):
    """Two modalities (widths 6, 5), 24 / 8 / 8 rows; 3 classes or a regression target."""
    rng = np.random.default_rng(seed)
    x1, x2 = (rng.normal(size=(40, p)).astype(np.float32) for p in (6, 5))
    if task == "classification":
        y, classes = ((x1[:, 0] > 0).astype(np.int32) + (x2[:, 0] > 0)), 3
    else:
        y, classes = (x1[:, 0] - 2 * x2[:, 1]).astype(np.float32), 1
    split = lambda a, b: Split((x1[a:b], x2[a:b]), y[a:b])
    return MultiModalData(f"toy_{seed}", task, classes, ("a", "b"), split(0, 24), split(24, 32),
                          split(32, 40))


def _toy_config(task, extractor, weight_type):
    config = tiny_config()
    config.num_seeds, config.report_both_b1 = 1, False
    config.data.source = ""
    config.task, config.num_classes = task, 3 if task == "classification" else 1
    config.cohort.extractor, config.cohort.encoder_epochs = extractor, 2
    config.cohort.mod_outs = ((0, 3, 6), (0, 2, 5))                   # 8 members
    config.cohort.mod_hiddens = ((4,), (3,))
    config.train.batch_size = 8
    config.rho_list = (0.0, 2.0)
    config.divergence_weights = weight_type
    config.baselines.run = config.baselines.coop = False      # (the smoke run trains them)
    return config


@pytest.mark.parametrize("task, extractor, weight_type", [
    ("classification", "separate", "uniform"), ("regression", "encoder", "adversarial")])
def test_end_to_end_on_own_arrays(tmp_path, fast_compile, task, extractor, weight_type):
    config = _toy_config(task, extractor, weight_type)
    # Classification: one MultiModalData for every seed; regression: a function of the seed.
    data = _toy_data(7, task) if task == "classification" else (lambda s: _toy_data(s, task))
    results = train.train_and_evaluate(config, str(tmp_path), data=data)
    assert results["dataset"] == ("toy_7" if task == "classification" else "toy_1")
    assert results["metric"] == ("accuracy" if task == "classification" else "mse")
    assert len(results["members"]["dims"]) == 8
    w = np.asarray(results["weights"][0])
    if weight_type == "uniform":
        np.testing.assert_array_equal(w, np.ones(8))
        assert results["best_cluster"] == [None]
        assert 0.0 <= results["test"]["meta_fusion"] <= 1.0
        assert {"majority_voting", "weighted_voting"} <= set(results["test"])
    else:  # learn from the WORST cluster of the rho=0 losses; rho* = the largest rho
        expected = weights.clustering_weights(results["members"]["indep"]["val_loss"][0], seed=1,
                                              adversarial=True)
        np.testing.assert_array_equal(w, expected.w)
        assert results["best_cluster"] == [expected.cluster_idxs.tolist()]
        assert results["rho_star"] == [2.0]


def test_summarise_hand_values():
    out = train.summarise({"a": [1.0, 2.0, 4.0], "b": [5.0]})
    assert out["a"] == pytest.approx(7.0 / 3.0)
    assert out["a_se"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1) / np.sqrt(3.0))
    assert out["b"] == 5.0 and out["b_se"] == 0.0
