"""Tests for metafusion.evaluation: hand-computed metrics, seed summaries, rho*, baselines,
results, ensembles of a typed schedule record."""
import jax
import numpy as np
import pytest

from metafusion_jax.metafusion import ensembles
from metafusion_jax.metafusion import evaluation as ev
from metafusion_jax.metafusion import program
from metafusion_jax.metafusion.records import Predictions, StageRecord


def _record(rhos, best_val, pred_test):
    """A StageRecord with test predictions pred_test (train / val: the same arrays)."""
    s, r, m = best_val.shape
    zeros = np.zeros((s, r, 1, m))
    return StageRecord(np.asarray(rhos, np.float64), best_val, zeros, zeros,
                       Predictions(pred_test, pred_test, pred_test))


def test_summarise_three_seeds_hand_values():
    # [1, 2, 4]: mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9, / (3 - 1) = 7/3;
    # se = sqrt(7/3) / sqrt(3) = sqrt(7) / 3.
    out = ev.summarise({"a": [1.0, 2.0, 4.0], "b": [5.0]})
    assert out["a"] == pytest.approx(7.0 / 3.0)
    assert out["a_se"] == pytest.approx(np.sqrt(7.0) / 3.0)
    assert out["b"] == 5.0 and out["b_se"] == 0.0
    assert list(out) == ["a", "a_se", "b", "b_se"]


def test_metric_hand_values():
    # Regression: errors 1, -2, 0 -> MSE 5/3, for [N] and [N, 1] predictions.
    y = np.array([0.0, 1.0, 2.0])
    assert ev.metric(np.array([1.0, -1.0, 2.0]), y, task="regression") == pytest.approx(5 / 3)
    assert ev.metric(np.array([[1.0], [-1.0], [2.0]]), y, task="regression") == pytest.approx(5 / 3)
    # Classification: logits argmax [1, 0, 2, 2] vs labels [1, 1, 2, 0] -> 2/4; labels as well.
    logits = np.array([[0, 3, 1], [5, 1, 0], [0, 0, 1], [1, 0, 2]], np.float32)
    labels = np.array([1, 1, 2, 0])
    assert ev.metric(logits, labels, task="classification") == 0.5
    assert ev.metric(np.array([1, 0, 2, 2]), labels, task="classification") == 0.5


def test_rho_star_cluster_mean_and_adversarial():
    # Seed 0: all members -> row means [2, 1.5, 3] -> 1; cluster {0} -> column [1, 2, 0] -> 2.
    bv = np.array([[[1.0, 3.0], [2.0, 1.0], [0.0, 6.0]]] * 2)          # [S=2, R=3, M=2]
    np.testing.assert_array_equal(ev.rho_star(bv, [None, [0]], adversarial=False), [1, 2])
    np.testing.assert_array_equal(ev.rho_star(bv, [None, [0]], adversarial=True), [2, 2])


def test_baseline_scores_hand_values():
    # One seed, N = 2, K = 2: F = [early, m1, m2] outputs [N, 1]; y = [0, 0].
    F = np.array([[[1.0], [1.0]], [[2.0], [0.0]], [[0.0], [0.0]]])
    coop = _record([0.0, 0.5], np.array([[[3.0, 3, 3], [1.0, 1, 1]]]),   # [S, R=2, 3] -> rho 1
                   np.stack([np.zeros((3, 2, 1)), F])[None])             # [S, R, 3, N, 1]
    out = ev.baseline_scores(_record([0.0], np.zeros((1, 1, 3)), F[None, None]), coop,
                             np.zeros((1, 2)), task="regression")
    # early (1,1) -> 1; m1 (2,0) -> 2; m2 -> 0; late mean (1,0) -> 0.5; coop sum (3,1) -> 5.
    assert {k: v[0] for k, v in out.items()} == pytest.approx(
        {"early_fusion": 1.0, "modality_1": 2.0, "modality_2": 0.0, "late_fusion": 0.5,
         "coop": 5.0})
    assert all(len(v) == 1 for v in out.values())
    assert ev.baseline_scores(None, None, np.zeros((3, 2)), task="regression") == {}


def test_assemble_results_rho_star_values_and_b1_arm():
    e = ev.Evaluation(per_seed={"meta_fusion": [1.0, 3.0]}, star=np.array([2, 0]),
                      members={"m": 1}, indep_members={"i": 2}, b1_star=np.array([1, 1]),
                      b1_per_seed={"meta_fusion": [2.0, 2.0]})
    res = ev.assemble_results(e, dataset="d", setting="s", seeds=[7, 8], task="classification",
                              rho_list=[0, 0.5, 3], clusters=[None, np.array([0, 2])],
                              weights=np.ones((2, 3)), dims=[(1, 2)], b1_warm_start=False)
    assert res["metric"] == "accuracy" and res["rho_star"] == [3.0, 0.0]
    assert res["test"]["meta_fusion"] == 2.0 and res["test"]["meta_fusion_se"] == 1.0
    assert res["best_cluster"] == [None, [0, 2]] and res["members"]["dims"] == [[1, 2]]
    assert res["b1_arm"] == {"warm_start_b1": False, "rho_star": [0.5, 0.5],
                             "test": {"meta_fusion": 2.0, "meta_fusion_se": 0.0},
                             "per_seed": {"meta_fusion": [2.0, 2.0]}}
    assert "b1_arm" not in ev.assemble_results(e._replace(b1_per_seed=None), dataset="d",
                                               setting="s", seeds=[7, 8], task="regression",
                                               rho_list=[0, 0.5, 3], clusters=[None, None],
                                               weights=np.ones((2, 3)), dims=[(1,)])


def test_evaluate_runs_reads_the_schedule_record(fast_compile):
    # One seed, M = 3 members, N = 4 rows, y = 0: member c predicts c + rho index (MSE (c+r)^2).
    y = {sp: np.zeros((1, 4), np.float32) for sp in ev.SPLITS}
    preds = lambda r0, r: np.stack([np.full((4, 1), c + r0 + i, np.float32) for i in range(r)
                                    for c in range(3)]).reshape(r, 3, 4, 1)[None]
    indep = _record([0.0], np.array([[[1.0, 2.0, 3.0]]]), preds(0, 1))
    mutual = _record([1.0, 3.0], np.array([[[5.0, 5, 5], [0.5, 9, 9]]]), preds(1, 2))
    other = _record([1.0], np.array([[[0.1, 0.2, 0.3]]]), preds(7, 1))
    sched = program.ScheduleResult(indep, mutual, np.ones((1, 3)), [None], np.array([0]),
                                   np.array([0.0]), other, np.array([1]))
    params = jax.vmap(lambda k: ensembles.stacking_init(k, 3, 1))(jax.random.split(
        jax.random.key(0), 1))
    stacker = lambda keys, *args: params
    out = ev.evaluate_runs(sched, ys=y, stacker=stacker, stack_keys=None, task="regression")
    assert out.star.tolist() == [0] and out.b1_star.tolist() == [1]
    assert out.members["val_loss"] == [[1.0, 2.0, 3.0]]
    assert out.members["test"] == [[0.0, 1.0, 4.0]]                    # rho index 0: (c)^2
    assert out.per_seed["best_single"] == [0.0] and out.per_seed["indep_best_single"] == [0.0]
    assert out.b1_per_seed["best_single"] == [49.0]                   # the other arm: 7^2
