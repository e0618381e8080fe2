"""Meta Fusion training loop: data -> cohort -> rho=0 -> weights -> rho>0 -> ensembles/baselines.

`train_and_evaluate(config, workdir)` runs every seed of `config.num_seeds` in ONE program per
stage (data, params and keys stacked on a leading S axis; rho values on a second axis R):

  1. indep     rho = 0, w = 1: the independent cohort (spec 2.3).
  2. mutual    every positive rho in one vmapped program, weights from the rho=0 best validation
               losses (clustering / adversarial / uniform); `warm_start_b1` starts the first
               positive rho from the rho=0 best params and Adam state (reference bug B1).
  3. b1_other  (only with `report_both_b1`) the first positive rho trained the other B1 way.
  4. baselines unimodal networks and early fusion: the dummy cohort [[p_m, 0], ...] at rho = 0.
  5. coop      cooperative learning (2-modality regression only, `baselines.coop`).
Then rho* (spec 2.3; with adversarial weights the largest rho, as the reference compares
there), the ensembles on the rho* cohort and on the independent cohort (`indep_` keys;
`indep_greedy` is re-selected on the rho=0 cohort, i.e. bug B7 is not reproduced; the stacking
meta-learners of both cohorts share their keys), and `workdir/results.json`.

Checkpoints: after each stage the member predictions (train/val/test), best validation losses
and curves of every completed stage go into one orbax `latest` checkpoint (meta: the stage name,
completed stages and rho runs). A killed run started again skips completed stages and ends with
identical results (keys are derived from the seeds, never saved).

results.json: see `evaluation` (means over seeds, standard errors, per-seed values).
"""
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from metafusion_jax.metafusion import baselines, evaluation, mutual, program, weights
from metafusion_jax.metafusion.evaluation import SPLITS, summarise  # noqa: F401
from metafusion_jax.metafusion.inputs import config_error, raw_layout, stack_splits
from metafusion_jax.metafusion.inputs import (  # noqa: F401  (re-exported for callers)
    DATA_SOURCES, build_cohort, validate_config)
from metafusion_jax.training.artifacts import check_finite, write_json_atomic
from metafusion_jax.training.checkpoints import RunCheckpoints
from metafusion_jax.training.writers import MetricWriter

# ----------------------------------------------------------------------------- stages


def _train_data(inputs):
    return {k: inputs[k] for k in ("x_train", "y_train", "x_val", "y_val")}


class _Runner:
    """The jitted programs of one cohort model (compiled once, reused by every stage)."""

    def __init__(self, config, model, inputs, step=None):
        self.step = step or mutual.make_cohort_step(model.apply, task=config.task,
                                                    learning_rate=config.train.learning_rate)
        n_train = inputs["y_train"].shape[1]
        prog = program.make_program(self.step, n_train=n_train,
                                    batch_size=config.train.batch_size, epochs=config.train.epochs)
        self.run_seeds = jax.jit(prog.run_seeds)
        per_rho = jax.vmap(model.apply, in_axes=(0, None))
        self.predict = jax.jit(jax.vmap(per_rho, in_axes=(0, 0)))      # [S,R,M..],[S,N..]
        self.inputs = inputs

    def run(self, params, opt, rhos, w, keys, *, keep_best=False):
        """params/opt [S, R, M, ...], rhos [R], w [S, R, M], keys [S, R] -> numpy stage record."""
        res = self.run_seeds(params, opt, _train_data(self.inputs), jnp.asarray(rhos, jnp.float32),
                             jnp.asarray(w, jnp.float32), keys)
        record = {"best_val": res.best_val, "val_curve": res.val_curve,
                  "train_task": res.train_task}
        # A sum is non-finite iff some entry is (float64: no overflow of large finite losses).
        check_finite({k: np.sum(np.asarray(v, np.float64)) for k, v in record.items()},
                     f"the cohort's training/validation losses (rho {list(rhos)})")
        for split in SPLITS:
            record[f"pred_{split}"] = self.predict(res.best_params, self.inputs[f"x_{split}"])
        if keep_best:
            record["warm"] = {"params": res.best_params, "opt": res.best_opt_state}
        return jax.tree.map(np.asarray, record)


def _keys(base_keys, indices):
    """[S] keys -> [S, R] keys: the run of rho index r uses fold_in(key, r) (as program.py)."""
    return jnp.stack([jax.vmap(lambda k: jax.random.fold_in(k, r))(base_keys) for r in indices], 1)


def _repeat(tree, r):
    return jax.tree.map(lambda a: jnp.repeat(jnp.asarray(a)[:, None], r, axis=1), tree)


def divergence_weights(config, best_val0, seed):
    """Host weights from the rho=0 best validation losses [M] -> (w [M], cluster idx or None)."""
    if config.divergence_weights == "uniform":
        return weights.uniform_weights(len(best_val0)), None
    cw = weights.clustering_weights(best_val0, seed=seed, optimal_k=config.optimal_k or None,
                                    adversarial=config.divergence_weights == "adversarial")
    return cw.w, cw.cluster_idxs


def _stage_indep(ctx, done):
    keep = ctx.config.warm_start_b1 or ctx.config.report_both_b1
    s, m = ctx.best_shape
    return ctx.runner.run(_repeat(ctx.params0, 1), _repeat(ctx.opt0, 1), [0.0],
                          np.ones((s, 1, m)), _keys(ctx.keys, [0]), keep_best=keep)


def _positive_init(ctx, done, r, warm):
    params, opt = _repeat(ctx.params0, r), _repeat(ctx.opt0, r)
    if warm:  # bug B1: the first positive rho continues from the rho=0 best params and Adam
        put = lambda a, b: jnp.asarray(a).at[:, 0].set(jnp.asarray(b)[:, 0])
        params = jax.tree.map(put, params, done["indep"]["warm"]["params"])
        opt = jax.tree.map(put, opt, done["indep"]["warm"]["opt"])
    return params, opt


def _stage_mutual(ctx, done):
    rhos = [float(r) for r in ctx.config.rho_list[1:]]
    params, opt = _positive_init(ctx, done, len(rhos), ctx.config.warm_start_b1)
    w = np.repeat(ctx.weights[:, None], len(rhos), axis=1)
    return ctx.runner.run(params, opt, rhos, w, _keys(ctx.keys, range(1, len(rhos) + 1)))


def _stage_b1_other(ctx, done):
    params, opt = _positive_init(ctx, done, 1, not ctx.config.warm_start_b1)
    return ctx.runner.run(params, opt, [float(ctx.config.rho_list[1])], ctx.weights[:, None],
                          _keys(ctx.keys, [1]))


def _benchmark_runner(ctx, coop):
    dims = ctx.datas[0].dims
    model = baselines.make_benchmark_cohort(dims, hidden=tuple(ctx.config.cohort.head_hiddens),
                                            out_dim=ctx.config.num_classes)
    step = baselines.make_coop_step(model.apply, learning_rate=ctx.config.train.learning_rate,
                                    reproduce_b17=ctx.config.baselines.coop_b17) if coop else None
    runner = _Runner(ctx.config, model, stack_splits(ctx.datas, raw_layout), step)
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 100 + coop))(ctx.keys)
    params = jax.vmap(model.init)(keys)
    return runner, params, jax.vmap(runner.step.init_opt)(params), keys


def _stage_baselines(ctx, done):
    """Early fusion and unimodal networks (spec 4), trained independently (rho = 0)."""
    runner, params, opt, keys = _benchmark_runner(ctx, coop=False)
    ones = np.ones((len(ctx.seeds), 1, jax.tree.leaves(params)[0].shape[1]))
    return runner.run(_repeat(params, 1), _repeat(opt, 1), [0.0], ones, _keys(keys, [0]))


def _stage_coop(ctx, done):
    """Cooperative learning over the rho list filtered to [0, 1), one program over rho."""
    runner, params, opt, keys = _benchmark_runner(ctx, coop=True)
    rhos = baselines.coop_rhos(ctx.config.rho_list)
    ones = np.ones((len(ctx.seeds), len(rhos), 3))
    return runner.run(_repeat(params, len(rhos)), _repeat(opt, len(rhos)), rhos, ones,
                      _keys(keys, range(len(rhos))))


# ----------------------------------------------------------------------------- the loop


class _Context:
    """What every stage reads: config, data, cohort programs, initial state, keys, weights."""

    def __init__(self, config, seeds):
        self.config = config
        self.seeds = seeds
        self.datas = [DATA_SOURCES[config.data.source](config, s) for s in seeds]
        base = [jax.random.split(jax.random.key(s), 3) for s in seeds]
        init_keys, self.keys, self.stack_keys = (jnp.stack(k) for k in zip(*base))
        self.spec, self.model, self.params0, self.inputs = build_cohort(config, self.datas,
                                                                        init_keys)
        self.runner = _Runner(config, self.model, self.inputs)
        self.opt0 = jax.vmap(self.runner.step.init_opt)(self.params0)
        self.best_shape = (len(seeds), self.spec.num_members)
        self.stacker = evaluation.make_stacking_fitter(
            task=config.task, n_train=self.inputs["y_train"].shape[1],
            num_members=self.spec.num_members, num_classes=config.num_classes,
            epochs=config.ensembles.meta_learner_epochs, batch_size=config.train.batch_size,
            learning_rate=config.ensembles.meta_learner_lr)
        self.weights, self.clusters = None, None

    def set_weights(self, indep):
        pairs = [divergence_weights(self.config, indep["best_val"][s, 0], seed)
                 for s, seed in enumerate(self.seeds)]
        self.weights = np.stack([np.asarray(w, np.float32) for w, _ in pairs])
        self.clusters = [c for _, c in pairs]


STAGES = {"indep": _stage_indep, "mutual": _stage_mutual, "b1_other": _stage_b1_other,
          "baselines": _stage_baselines, "coop": _stage_coop}


def active_stages(config):
    names = ["indep", "mutual"] + (["b1_other"] if config.report_both_b1 else [])
    names += ["baselines"] if config.baselines.run else []
    return names + (["coop"] if config.baselines.coop else [])


def _stage_rhos(config, name):
    rhos = [float(r) for r in config.rho_list]
    return {"indep": [0.0], "mutual": rhos[1:], "b1_other": rhos[1:2],
            "coop": baselines.coop_rhos(rhos)}.get(name, [0.0])


def _log_stage(writer, name, index, record, rhos, epochs):
    curve, train = record["val_curve"].mean(0), record["train_task"].mean(0)   # [R, E, M]
    for e in range(epochs):
        scalars = {}
        for r, rho in enumerate(rhos):
            tag = f"{name}/rho_{rho:g}"
            scalars[f"{tag}/val_task_mean"] = curve[r, e].mean()
            scalars[f"{tag}/train_task_mean"] = train[r, e].mean()
            scalars.update({f"{tag}/val_task/member_{c:02d}": v for c, v in enumerate(curve[r, e])})
        writer.write_scalars(index * epochs + e + 1, scalars)
    writer.flush()


def _pack_warm(record):
    if "warm" in record:  # leaves only: orbax gives optax NamedTuples back as dicts
        record["warm"] = {k: jax.tree.leaves(v) for k, v in record["warm"].items()}
    return record


def _unpack_warm(ctx, record):
    if "warm" in record:
        like = {"params": _repeat(ctx.params0, 1), "opt": _repeat(ctx.opt0, 1)}
        record["warm"] = {k: jax.tree.unflatten(jax.tree.structure(like[k]), record["warm"][k])
                          for k in like}
    return record


def run_stages(ctx, workdir):
    """Runs (or restores) every active stage; returns ({stage: record}, {stage: seconds})."""
    config, names = ctx.config, active_stages(ctx.config)
    ckpt = RunCheckpoints(workdir)
    done, timing = {}, {}
    restored = ckpt.restore_latest(None)
    if restored is not None:
        if restored.meta["config"] != config.to_json(sort_keys=True):
            ckpt.close()
            raise ValueError(f"workdir {workdir} holds a checkpoint of a different config; use a "
                             "new --workdir or delete its checkpoints/ folder.")
        done = {k: _unpack_warm(ctx, dict(v)) for k, v in restored.state.items()}
        timing = dict(restored.meta["timing"])
    writer = MetricWriter(workdir)
    writer.truncate_after(len(done) * config.train.epochs)
    try:
        for index, name in enumerate(tqdm.tqdm(names, desc="Meta Fusion stages", unit="stage")):
            if name == "mutual" or name == "b1_other":
                ctx.set_weights(done["indep"]) if ctx.weights is None else None
            if name in done:
                continue
            start = time.time()
            record = STAGES[name](ctx, done)
            timing[name] = time.time() - start
            if "val_curve" in record:
                _log_stage(writer, name, index, record, _stage_rhos(config, name),
                           config.train.epochs)
            done[name] = record
            rho_runs = sorted({r for n in done for r in _stage_rhos(config, n)})
            ckpt.save_latest(index + 1, {k: _pack_warm(dict(v)) for k, v in done.items()},
                             {"stage": name, "completed": list(done), "rho_runs_completed":
                              rho_runs, "timing": timing,
                              "config": config.to_json(sort_keys=True)})
            ckpt.wait()
            done[name] = _unpack_warm(ctx, _pack_warm(dict(record)))
    finally:
        ckpt.close()
        writer.close()
    return done, timing


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains every stage (resuming from `workdir`), evaluates, writes `workdir/results.json`.

    Args:
      config: a `configs/metafusion.py` ConfigDict.
      workdir: output folder (results.json, metrics.jsonl, TensorBoard events, checkpoints/).

    Returns:
      The results.json dict (see the module docstring).

    Raises:
      ValueError: bad config values or data; FloatingPointError: a non-finite loss (nothing is
        saved for that stage and no results.json is written).
    """
    validate_config(config)
    start = time.time()
    seeds = [int(config.seed) + s for s in range(int(config.num_seeds))]
    ctx = _Context(config, seeds)
    if config.baselines.coop and len(ctx.datas[0].dims) != 2:
        config_error("baselines.coop", "False unless there are exactly 2 modalities", True)
    done, timing = run_stages(ctx, workdir)
    if ctx.weights is None:
        ctx.set_weights(done["indep"])
    ev = evaluation.evaluate_runs(
        done["indep"], done["mutual"], benchmark=done.get("baselines"), coop=done.get("coop"),
        b1_other=done.get("b1_other"),
        ys={sp: np.asarray(ctx.inputs[f"y_{sp}"]) for sp in SPLITS}, stacker=ctx.stacker,
        stack_keys=ctx.stack_keys, clusters=ctx.clusters, task=config.task,
        adversarial=config.divergence_weights == "adversarial")
    results = evaluation.assemble_results(
        ev, dataset=ctx.datas[0].name, setting=config.data.setting, seeds=seeds,
        task=config.task, rho_list=config.rho_list, clusters=ctx.clusters, weights=ctx.weights,
        dims=ctx.spec.dims, b1_warm_start=not config.warm_start_b1)
    timing["total_s"] = time.time() - start
    results["timing"] = timing
    results["config"] = config.to_dict()
    check_finite({k: v for k, v in results["test"].items()}, "the test metrics")
    write_json_atomic(os.path.join(workdir, "results.json"), results)
    return results
