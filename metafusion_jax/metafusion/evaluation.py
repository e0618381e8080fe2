"""Meta Fusion post-training evaluation: ensembles, baselines, rho*, seed summaries, results.

Everything here reads the typed host records of `program` (`records.StageRecord`: `best_val`
[S, R, M], `preds.<split>` [S, R, M, N, C]; `program.ScheduleResult`) and takes explicit keyword
arguments; `train.train_and_evaluate` unpacks the config and calls these.

results.json: `test[<method>]` is the mean over seeds of the test metric (`metric`: "mse" for
regression, lower is better; "accuracy" for classification) and `test[<method>_se]` its
standard error (std with ddof=1 / sqrt(S); 0 for one seed); `per_seed[<method>]` lists the
per-seed values in the order of `seeds`.
"""
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

from metafusion_jax.metafusion import baselines, ensembles, program
from metafusion_jax.metafusion.records import SPLITS, StageRecord

METRICS = {"regression": "mse", "classification": "accuracy"}


def metric(pred, y, *, task: str) -> float:
    """Test MSE (regression) or accuracy (classification).

    Args:
      pred: [N, C] outputs; for classification logits [N, C] or labels [N].
      y: [N] targets or labels.
      task: "regression" or "classification".
    """
    pred, y = np.asarray(pred), np.asarray(y)
    if task == "regression":
        return float(np.mean((pred.reshape(len(y), -1) - y[:, None]) ** 2))
    return float(np.mean((pred if pred.ndim == 1 else pred.argmax(-1)) == y))


def make_stacking_fitter(*, task: str, n_train: int, num_members: int, num_classes: int,
                         epochs: int, batch_size: int, learning_rate: float) -> Callable:
    """jit(vmap(fit)) over a leading G axis: params from keys [G], member outputs [G, M, N, C].

    Returns:
      fit_all(keys [G], p_train [G, M, N, C], y_train [G, N], p_val, y_val) -> stacking params
      with a leading G axis.
    """
    fit = ensembles.make_stacking_fit(task=task, n_train=n_train, epochs=epochs,
                                      batch_size=batch_size, learning_rate=learning_rate)

    def fit_all(keys, p_train, y_train, p_val, y_val):
        k_init, k_fit = jax.vmap(jax.random.split, out_axes=1)(keys)
        params = jax.vmap(lambda k: ensembles.stacking_init(k, num_members, num_classes))(
            k_init)
        return jax.vmap(fit)(params, p_train, y_train, p_val, y_val, k_fit).best_params
    return jax.jit(fit_all)


def cohort_scores(preds, y, best_val, stack_params, *, task: str):
    """Test metric of every ensemble over one seed's cohort.

    Args:
      preds: {split: [M, N, C]} member outputs.
      y: {split: [N]} targets.
      best_val: [M] best validation losses.
      stack_params: this seed's fitted stacking meta-learner.
      task: "regression" or "classification".

    Returns:
      ({method: test metric}, the greedy `ensembles.Selection`).
    """
    inv = ensembles.inverse_loss_weights(best_val)
    sel = ensembles.greedy_selection(preds["val"], y["val"], best_val, task=task)
    test = preds["test"]
    out = {"meta_fusion": ensembles.greedy_predict(test, sel),
           "stacking": ensembles.stacking_predict(stack_params, test),
           "best_single": ensembles.best_single(test, best_val),
           "simple_average": ensembles.simple_average(test),
           "weighted_average": ensembles.weighted_average(test, inv)}
    if task == "classification":
        out["majority_voting"] = ensembles.majority_voting(test)
        out["weighted_voting"] = ensembles.weighted_voting(test, inv)
    return {k: metric(v, y["test"], task=task) for k, v in out.items()}, sel


def evaluate_cohort(record: StageRecord, rho_index, *, ys, stacker: Callable, stack_keys,
                    task: str):
    """Ensembles of each seed's cohort at rho index rho_index[s].

    Args:
      record: a StageRecord [S, R, ...] with predictions.
      rho_index: [S] ints, the rho run evaluated for each seed.
      ys: {split: [S, N]} targets.
      stacker: `make_stacking_fitter(...)`.
      stack_keys: [S] keys of the stacking meta-learners.
      task: "regression" or "classification".

    Returns:
      ({method: [S] test metrics}, {"val_loss": [S][M], "test": [S][M] member test metrics,
      "greedy_members": [S] lists of selected member indices}).
    """
    s_idx = np.arange(len(rho_index))
    pick = {sp: getattr(record.preds, sp)[s_idx, rho_index] for sp in SPLITS}   # [S, M, N, C]
    bv = record.best_val[s_idx, rho_index]                                      # [S, M]
    # Same stacking keys for every cohort: rho* = 0 gives stacking == indep_stacking.
    stack = stacker(stack_keys, pick["train"], ys["train"], pick["val"], ys["val"])
    per_seed, members, selections = {}, [], []
    for s in s_idx:
        scores, sel = cohort_scores({sp: pick[sp][s] for sp in SPLITS},
                                    {sp: ys[sp][s] for sp in SPLITS}, bv[s],
                                    jax.tree.map(lambda a, s=s: a[s], stack), task=task)
        for k, v in scores.items():
            per_seed.setdefault(k, []).append(v)
        selections.append(sel.indices.tolist())
        members.append([metric(pick["test"][s][c], ys["test"][s], task=task)
                        for c in range(bv.shape[1])])
    return per_seed, {"val_loss": bv.tolist(), "test": members, "greedy_members": selections}


def rho_star(best_val, clusters: Sequence[Optional[Sequence[int]]], *, adversarial: bool):
    """Per-seed rho* index [S] from best_val [S, R, M] (spec 2.3; `program.rho_star`).

    With adversarial weights the largest rho is returned, as the reference compares there.
    """
    return program.rho_star(best_val, clusters, largest=adversarial)


def indep_names(per_seed):
    """Independent-cohort scores renamed: meta_fusion -> indep_greedy, <k> -> indep_<k>."""
    return {("indep_greedy" if k == "meta_fusion" else "indep_" + k): v
            for k, v in per_seed.items()}


def baseline_scores(benchmark: Optional[StageRecord], coop: Optional[StageRecord], y_test, *,
                    task: str):
    """modality_<k>, early_fusion, late_fusion and coop per seed (spec 4).

    Args:
      benchmark: the baselines stage record (`preds.test` [S, 1, K + 1, N, C]) or None.
      coop: the coop stage record (`best_val` [S, R, 3], `preds.test` [S, R, 3, N, C]) or None.
      y_test: [S, N] test targets.
      task: "regression" or "classification".

    Returns:
      {method: [S] test metrics} (empty without either record).
    """
    y, out = np.asarray(y_test), {}
    for s in range(len(y)):
        preds = {}
        if benchmark is not None:
            preds = baselines.benchmark_predictions(benchmark.preds.test[s, 0])
        if coop is not None:
            r = baselines.choose_coop_rho(coop.best_val[s])
            preds["coop"] = baselines.coop_predict(coop.preds.test[s, r])
        for k, v in preds.items():
            out.setdefault(k, []).append(metric(v, y[s], task=task))
    return out


def summarise(per_seed):
    """{method: [S values]} -> {method: mean, method_se: std(ddof=1)/sqrt(S) (0 if S = 1)}."""
    out = {}
    for k, v in per_seed.items():
        v = np.asarray(v, np.float64)
        out[k] = float(v.mean())
        out[k + "_se"] = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return out


class Evaluation(NamedTuple):
    """What `evaluate_runs` scores: per-seed metrics, rho* indices [S], member records."""
    per_seed: dict
    star: np.ndarray
    members: dict
    indep_members: dict
    b1_star: Optional[np.ndarray] = None
    b1_per_seed: Optional[dict] = None


def evaluate_runs(schedule: program.ScheduleResult, *, benchmark=None, coop=None, ys,
                  stacker: Callable, stack_keys, task: str) -> Evaluation:
    """All test scores of one run: rho* and independent cohorts, baselines, the other B1 arm.

    Args:
      schedule: `program.run_schedule(...)` with predictions (rho*, both B1 arms).
      benchmark, coop: the optional baseline StageRecords (None when not run).
      ys: {split: [S, N]} targets.
      stacker, stack_keys: see `evaluate_cohort`.
      task: "regression" or "classification".
    """
    score = lambda record, idx: evaluate_cohort(record, idx, ys=ys, stacker=stacker,
                                                stack_keys=stack_keys, task=task)
    main, star = schedule.result, np.asarray(schedule.rho_star_index)
    per_seed, members = score(main, star)
    indep_seed, indep_members = score(main, 0 * star)
    per_seed.update(indep_names(indep_seed))
    per_seed.update(baseline_scores(benchmark, coop, ys["test"], task=task))
    out = Evaluation(per_seed, star, members, indep_members)
    if schedule.b1_other is not None:
        o_star = np.asarray(schedule.b1_rho_star_index)
        out = out._replace(b1_star=o_star, b1_per_seed=score(schedule.b1_result, o_star)[0])
    return out


def assemble_results(ev: Evaluation, *, dataset: str, setting: str, seeds: Sequence[int],
                     task: str, rho_list: Sequence[float], clusters, weights, dims,
                     b1_warm_start: Optional[bool] = None) -> dict:
    """The results.json dict (less `timing` and `config`), keys in results.json order.

    Args:
      ev: `evaluate_runs(...)`.
      dataset, setting: names of the data.
      seeds: the S seeds.
      task: "regression" or "classification" (gives `metric`).
      rho_list: the R rho values.
      clusters: S best-cluster member index lists (or None); weights: [S, M] divergence weights.
      dims: the cohort's member dims.
      b1_warm_start: `warm_start_b1` of the other B1 arm (reported when `ev` has one).
    """
    rhos = np.asarray(rho_list, np.float64)
    results = {
        "dataset": dataset, "setting": setting, "seeds": list(seeds), "metric": METRICS[task],
        "test": summarise(ev.per_seed), "per_seed": ev.per_seed, "rho_list": rhos.tolist(),
        "rho_star": rhos[ev.star].tolist(),
        "best_cluster": [None if c is None else np.asarray(c).tolist() for c in clusters],
        "weights": np.asarray(weights).tolist(),
        "members": {"dims": [list(d) for d in dims], "rho_star": ev.members,
                    "indep": ev.indep_members}}
    if ev.b1_per_seed is not None:
        results["b1_arm"] = {"warm_start_b1": b1_warm_start,
                             "rho_star": rhos[ev.b1_star].tolist(),
                             "test": summarise(ev.b1_per_seed), "per_seed": ev.b1_per_seed}
    return results
