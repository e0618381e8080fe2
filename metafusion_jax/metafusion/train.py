"""Meta Fusion training loop: data -> cohort -> rho schedule -> baselines -> ensembles/results.

`train_and_evaluate(config, workdir, data=None)` runs every seed of `config.num_seeds` in ONE
program per stage (data, params and keys stacked on a leading S axis; rho values on a second
axis R). `inputs.resolve` gives the effective config and the per-seed data; then the stages:

  indep, mutual, b1_other   `program.run_schedule`: rho = 0 (w = 1), the host divergence weights
                            (clustering / adversarial / uniform) from its best validation losses,
                            every positive rho in one program (`warm_start_b1`: the first starts
                            from the rho=0 best params and Adam state, reference bug B1) and, with
                            `report_both_b1`, the first positive rho trained the other B1 way.
  baselines                 unimodal networks and early fusion: the dummy cohort [[p_m, 0], ...]
                            at rho = 0 (`program.run_stage`).
  coop                      cooperative learning (2-modality regression only, `baselines.coop`).

Then rho* (spec 2.3; with adversarial weights the largest rho, as the reference compares
there), the ensembles on the rho* cohort and on the independent cohort (`indep_` keys;
`indep_greedy` is re-selected on the rho=0 cohort, i.e. bug B7 is not reproduced; the stacking
meta-learners of both cohorts share their keys), and `workdir/results.json`.

Checkpoints: every stage trains in chunks of `checkpoint_every_epochs` epochs. After each chunk
one orbax `latest` checkpoint holds the finished stage records (predictions, losses, curves,
the B1 warm state) and the running stage's full state (params, Adam state, best params / Adam
state / losses, curves so far); meta: the stage, its epochs done, timing and the config. A killed
run started again resumes inside the stage it was killed in and ends with a bitwise identical
results.json (less `timing`): keys are derived (fold_in(key, epoch)), never saved, and the
epoch programs do not depend on where the chunks end. A workdir of another config is refused
(the message names the fields that differ); a fresh run in a workdir with logs but no checkpoint
moves them and any results.json aside first (`writers.open_run_log`).

Devices (`placement.py`): one mesh from `config.mesh`; every stage's [S, R, M, ...] program runs
with the seeds split over "runs" (padded to its size, the padded results dropped) and a
RunState's members over "members"; params are created sharded. Checkpoints hold the real seeds
only and restore onto whatever mesh the resumed run has (`mesh` and `compile_cache_dir` may
change between a run and its resume). Several processes (`mesh.initialize_distributed`): every
process runs the same program on its devices and writes its shards of the checkpoints; only
process 0 writes metrics.jsonl, TensorBoard events, the progress bar and results.json.
JAX's persistent compilation cache is on (`config.compile_cache_dir`, default "auto":
$XDG_CACHE_HOME/metafusion_jax/jax or ~/.cache/metafusion_jax/jax; "" turns it off).
"""
import json
import os
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from metafusion_jax.figures import cohort as cohort_figures
from metafusion_jax.metafusion import baselines, evaluation, inputs, mutual, program, records
from metafusion_jax.metafusion import placement as placement_lib
from metafusion_jax.metafusion import weights
from metafusion_jax.metafusion.evaluation import summarise  # noqa: F401  (re-exported)
from metafusion_jax.metafusion.inputs import (  # noqa: F401  (re-exported for callers)
    DATA_SOURCES, build_cohort, raw_layout, stack_splits, validate_config)
from metafusion_jax.metafusion.records import SPLITS, Predictions, Progress, WarmState
from metafusion_jax.training.artifacts import check_finite, prepare_workdir, write_json_atomic
from metafusion_jax.training.checkpoints import RunCheckpoints
from metafusion_jax.training import run_info
from metafusion_jax.training.mesh import is_writer
from metafusion_jax.training.writers import open_run_log
from metafusion_jax.training.xla_flags import one_shot_jit

SCHEDULE_STAGES = (program.INDEP, program.MUTUAL, program.B1_OTHER)


class CohortPrograms(NamedTuple):
    """The programs of one cohort model, built once and shared by its stages.

    step: `mutual.CohortStep`; program: `program.Program`; data: {"x_train", "y_train",
    "x_val", "y_val"} leaves [S, N, ...]; predict: best_params [S, R, M, ...] -> Predictions
    [S, R, M, N, C] on the train / val / test inputs.
    """
    step: mutual.CohortStep
    program: program.Program
    data: dict
    predict: Callable


def make_cohort_programs(config, apply: Callable, cohort_inputs: dict,
                         step=None, place: Callable = None) -> CohortPrograms:
    """Step (default: mutual learning), rho-run program and predictions of a cohort.

    Args:
      config: the run config (task, train.*).
      apply: (params [M, ...], xs) -> F [M, N, C].
      cohort_inputs: {"x_<split>": K arrays [S, N, .], "y_<split>": [S, N]}.
      step: another `mutual.CohortStep` (e.g. Coop's).
      place: puts the inputs on the mesh (`placement.Placement.put`); None: as given.
    """
    cohort_inputs = cohort_inputs if place is None else place(cohort_inputs)
    step = step or mutual.make_cohort_step(apply, task=config.task,
                                           learning_rate=config.train.learning_rate)
    prog = program.make_program(step, n_train=cohort_inputs["y_train"].shape[1],
                                batch_size=config.train.batch_size, epochs=config.train.epochs)
    apply_sr = one_shot_jit(jax.vmap(jax.vmap(apply, in_axes=(0, None)), in_axes=(0, 0)))
    predict = lambda best: Predictions(*[apply_sr(best, cohort_inputs[f"x_{sp}"])
                                         for sp in SPLITS])
    data = {k: cohort_inputs[k] for k in ("x_train", "y_train", "x_val", "y_val")}
    return CohortPrograms(step, prog, data, predict)


def weight_fn(config, seed: int) -> Callable:
    """Host divergence weights of one seed: best_val0 [M] -> (w [M], best cluster or None)."""
    def fn(best_val0):
        if config.divergence_weights == "uniform":
            return weights.uniform_weights(len(best_val0)), None
        cw = weights.clustering_weights(best_val0, seed=seed, optimal_k=config.optimal_k or None,
                                        adversarial=config.divergence_weights == "adversarial")
        return cw.w, cw.cluster_idxs
    return fn


def chunk_epochs(config) -> int:
    return int(config.get("checkpoint_every_epochs", 10))


class Run(NamedTuple):
    """What every stage reads: config, seeds, data, the cohort, its programs and keys."""
    config: object
    seeds: list
    datas: list
    spec: object
    cohort: CohortPrograms
    params0: object
    inputs: dict
    keys: object
    stack_keys: object
    placement: placement_lib.Placement


def build_run(config, datas, seeds, placement=None) -> Run:
    """Cohort, initial params [S_pad, M, ...] and keys of the resolved config and per-seed data.

    placement: default the mesh of `config.mesh` (seeds padded to its "runs" size); params,
    inputs and keys are created on it. `Run.inputs` and `Run.stack_keys` stay [S] (host).
    """
    placement = placement or placement_lib.make_placement(config.mesh, len(seeds))
    base = [jax.random.split(jax.random.key(s), 3) for s in seeds]
    init_keys, keys, stack_keys = (jnp.stack(k) for k in zip(*base))
    spec, model, params0, cohort_inputs = build_cohort(config, datas, init_keys,
                                                       init_stacked=placement.init)
    return Run(config, list(seeds), datas, spec,
               make_cohort_programs(config, model.apply, cohort_inputs, place=placement.put),
               placement.put(params0), cohort_inputs, placement.put(keys), stack_keys, placement)


def schedule_kwargs(run: Run) -> dict:
    """The config's keyword arguments of `program.run_schedule` (the trainer's and benchmark's)."""
    c = run.config
    return dict(keys=run.keys, weight_fn=[weight_fn(c, s) for s in run.seeds],
                warm_start=c.warm_start_b1, report_both_b1=c.report_both_b1,
                largest_rho=c.divergence_weights == "adversarial",
                chunk_epochs=chunk_epochs(c), predict=run.cohort.predict,
                placement=run.placement)


def run_schedule(run: Run, **hooks) -> program.ScheduleResult:
    """`program.run_schedule` of the run's cohort (hooks: done, progress, on_chunk, on_stage)."""
    return program.run_schedule(run.cohort.program, run.cohort.step, run.params0,
                                run.cohort.data, run.config.rho_list, **schedule_kwargs(run),
                                **hooks)


def _baseline_setup(run: Run, coop: bool):
    """Benchmark cohort programs, initial state [S, R, 3 or K + 1, ...], rhos, w and keys."""
    c = run.config
    model = baselines.make_benchmark_cohort(run.datas[0].dims, hidden=tuple(c.cohort.head_hiddens),
                                            out_dim=c.num_classes)
    step = baselines.make_coop_step(model.apply, learning_rate=c.train.learning_rate,
                                    reproduce_b17=c.baselines.coop_b17) if coop else None
    progs = make_cohort_programs(c, model.apply, stack_splits(run.datas, raw_layout), step,
                                 place=run.placement.put)
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 100 + coop))(run.keys)
    params = run.placement.init(model.init, keys)
    rhos = baselines.coop_rhos(c.rho_list) if coop else [0.0]
    p, o = program.stage_init(params, jax.vmap(progs.step.init_opt)(params), len(rhos),
                              warm=None)
    w = np.ones((len(run.seeds), len(rhos), model.spec.num_members), np.float32)
    k = jnp.stack([jax.vmap(lambda key, r=r: jax.random.fold_in(key, r))(keys)
                   for r in range(len(rhos))], axis=1)
    return progs, p, o, rhos, w, k


def run_baseline_stage(run: Run, name: str, **hooks) -> records.StageRecord:
    """The "baselines" (rho = 0) or "coop" (rho list filtered to [0, 1)) stage."""
    progs, p, o, rhos, w, k = _baseline_setup(run, coop=name == "coop")
    return program.run_stage(progs.program, p, o, progs.data, rhos, w, k, name=name,
                             chunk_epochs=chunk_epochs(run.config), predict=progs.predict,
                             placement=run.placement, **hooks)


def active_stages(config) -> list:
    names = [program.INDEP, program.MUTUAL] + ([program.B1_OTHER] if config.report_both_b1 else [])
    names += ["baselines"] if config.baselines.run else []
    return names + (["coop"] if config.baselines.coop else [])


def stage_rhos(config, name: str) -> list:
    rhos = [float(r) for r in config.rho_list]
    return {program.INDEP: [0.0], program.MUTUAL: rhos[1:], program.B1_OTHER: rhos[1:2],
            "coop": baselines.coop_rhos(rhos)}.get(name, [0.0])


class _Saver:
    """Stage bookkeeping of one run: checkpoints, metric logs, progress bar, timing.

    The checkpoint step is the number of epochs done over all stages; metrics.jsonl rows have
    step stage_index * E + epoch + 1.
    """

    def __init__(self, run: Run, workdir: str):
        self.config, self.names = run.config, active_stages(run.config)
        self.epochs = int(run.config.train.epochs)
        self.config_json = resume_json(run.config)
        self.ckpt, self.placement = RunCheckpoints(workdir), run.placement
        self.done, self.timing, self.logged, self.progress = {}, {}, {}, None
        self.writer = self.bar = None
        self.workdir, self.partial, self.t0 = workdir, 0.0, time.time()

    def _abstract(self, step):
        """The checkpoint's tree as restore targets: host records as numpy, the running stage's
        state [S, ...] on this run's mesh (whatever mesh saved it)."""
        folder = self.ckpt.latest.directory / str(step) / "state"
        tree = ocp.StandardCheckpointHandler().metadata(folder).tree

        def leaf(m):
            if m.sharding is None:        # saved from numpy (finished stages)
                return jax.ShapeDtypeStruct(m.shape, m.dtype)
            return self.placement.abstract(jax.ShapeDtypeStruct(m.shape, m.dtype))
        return jax.tree.map(leaf, tree)

    def restore(self, likes: Callable) -> None:
        """Loads the latest checkpoint (likes(stage) -> (RunState like, WarmState like))."""
        saved = self.ckpt.latest_meta()     # compare configs before any array is read
        if saved is not None:
            records.check_resumable(without_placement(saved.meta.get("config")),
                                    self.config_json, self.workdir)
        restored = None if saved is None else self.ckpt.restore_latest(self._abstract(saved.step))
        step = 0
        if restored is not None:
            meta = restored.meta
            step, self.timing = restored.step, dict(meta["timing"])
            self.done = {k: records.unpack_record(v, likes(k)[1] if "warm" in v else None)
                         for k, v in restored.state.get("done", {}).items()}
            self.logged = {k: self.epochs for k in self.done}
            if meta["progress"] is not None:
                name, epoch = meta["progress"]["stage"], int(meta["progress"]["epoch"])
                state = records.unpack_tree(restored.state["progress"], likes(name)[0])
                self.progress, self.logged[name] = Progress(name, epoch, state), epoch
                self.partial = self.timing.get(name, 0.0)
        writer = is_writer()
        self.writer = open_run_log(self.workdir, None if restored is None else step,
                                   also_stale=("results.json",), enabled=writer)
        self.bar = tqdm.tqdm(total=len(self.names) * self.epochs, initial=step,
                             desc="Meta Fusion", unit="epoch", disable=not writer)
        self._describe()

    def _describe(self) -> None:
        """Progress bar text: the stage that runs next and its rho values."""
        todo = [n for n in self.names if n not in self.done]
        if todo:
            rhos = ", ".join(f"{r:g}" for r in stage_rhos(self.config, todo[0]))
            self.bar.set_description(f"Meta Fusion {todo[0]} (rho {rhos})")

    def _log(self, name, val_curve, train_task, last):
        """Logs epochs [logged, last) of stage `name` (curves [S, R, E, M])."""
        first, index = self.logged.get(name, 0), self.names.index(name)
        curve, train = np.asarray(val_curve).mean(0), np.asarray(train_task).mean(0)
        for e in range(first, last):
            scalars = {}
            for r, rho in enumerate(stage_rhos(self.config, name)):
                tag = f"{name}/rho_{rho:g}"
                scalars[f"{tag}/val_task_mean"] = curve[r, e].mean()
                scalars[f"{tag}/train_task_mean"] = train[r, e].mean()
                scalars.update({f"{tag}/val_task/member_{c:02d}": v
                                for c, v in enumerate(curve[r, e])})
            self.writer.write_scalars(index * self.epochs + e + 1, scalars)
        self.writer.flush()
        self.logged[name] = last
        self.bar.update(last - first)

    def _save(self, name, epoch, progress_state):
        self.timing[name] = self.partial + time.time() - self.t0
        state = {"done": {k: records.pack_record(v) for k, v in self.done.items()}}
        meta = {"stage": name, "completed": list(self.done), "timing": self.timing,
                "progress": None, "config": self.config_json}
        if progress_state is not None:
            state["progress"] = records.pack_tree(self.placement.real(progress_state))
            meta["progress"] = {"stage": name, "epoch": epoch}
        if not state["done"]:
            del state["done"]
        self.ckpt.save_latest(self.names.index(name) * self.epochs + epoch, state, meta)

    def on_chunk(self, progress: Progress) -> None:
        curves = self.placement.host((progress.state.val_curve, progress.state.train_task))
        self._log(progress.stage, *curves, progress.epoch)   # (host: every process gathers)
        self._save(progress.stage, progress.epoch, progress.state)

    def on_stage(self, name: str, record: records.StageRecord) -> None:
        self._log(name, record.val_curve, record.train_task, self.epochs)
        self.done[name] = record
        self._save(name, self.epochs, None)
        self.partial, self.t0, self.progress = 0.0, time.time(), None
        self._describe()

    def hooks(self, names) -> dict:
        """Keyword arguments of a stage runner: the progress if it is one of `names`."""
        progress = self.progress if self.progress and self.progress.stage in names else None
        return dict(on_chunk=self.on_chunk, progress=progress)

    def close(self) -> None:
        self.ckpt.close()
        for closer in (self.writer, self.bar):
            if closer is not None:
                closer.close()


# Where a run executes, not what it computes: a run may resume on another mesh or cache (or
# with figures turned on or off).
PLACEMENT_FIELDS = ("mesh", "compile_cache_dir", "figures")


def resume_json(config) -> str:
    """The config JSON a checkpoint must match to resume (less `PLACEMENT_FIELDS`)."""
    return without_placement(config.to_json(sort_keys=True))


def without_placement(config_json):
    """A saved config JSON less `PLACEMENT_FIELDS` (anything else is returned as it is)."""
    try:
        tree = json.loads(config_json)
    except (TypeError, ValueError):
        return config_json
    if not isinstance(tree, dict):
        return config_json
    return json.dumps({k: v for k, v in tree.items() if k not in PLACEMENT_FIELDS},
                      sort_keys=True)


def _likes(run: Run) -> Callable:
    """stage -> (RunState like, WarmState like): the tree structures a checkpoint restores to."""
    def likes(name):
        if name in SCHEDULE_STAGES:
            init = lambda p0: run.cohort.program.init_seeds(
                *program.stage_init(p0, jax.vmap(run.cohort.step.init_opt)(p0), 1, warm=None))
            state = jax.eval_shape(init, run.params0)
            return state, WarmState(state.params, state.opt_state)
        progs, p, o, *_ = _baseline_setup(run, coop=name == "coop")
        return jax.eval_shape(progs.program.init_seeds, p, o), None
    return likes


def run_stages(run: Run, workdir: str):
    """Runs (or restores, resuming inside a stage) every active stage.

    Returns:
      (program.ScheduleResult, {"baselines" / "coop": StageRecord}, {stage: seconds}).
    """
    saver = _Saver(run, workdir)
    try:
        saver.restore(_likes(run))
        done = {k: v for k, v in saver.done.items() if k in SCHEDULE_STAGES}
        schedule = run_schedule(run, done=done, on_stage=saver.on_stage,
                                **saver.hooks(SCHEDULE_STAGES))
        extra = {}
        for name in [n for n in saver.names if n not in SCHEDULE_STAGES]:
            if name not in saver.done:
                saver.on_stage(name, run_baseline_stage(run, name, **saver.hooks([name])))
            extra[name] = saver.done[name]
    finally:
        saver.close()
    return schedule, extra, dict(saver.timing)


def train_and_evaluate(config, workdir: str, data=None) -> dict:
    """Trains every stage (resuming from `workdir`), evaluates, writes `workdir/results.json`.

    Args:
      config: a `configs/metafusion.py` ConfigDict.
      workdir: output folder (results.json, metrics.jsonl, TensorBoard events, checkpoints/).
      data: None (the built-in `config.data.source`), a `MultiModalData` for every seed, or a
        function seed -> `MultiModalData` (see `inputs.resolve`).

    Returns:
      The results.json dict (see `evaluation`), with `timing` and `config`.

    Raises:
      ValueError: bad config values or data (all checked before anything trains), a workdir
        that is a file or not writable, a workdir holding a checkpoint of another run (the
        message names the fields that differ); FloatingPointError: a non-finite loss (nothing
        is saved for those epochs and no results.json is written).
    """
    start = time.time()
    placement_lib.use_compile_cache(config.get("compile_cache_dir", "auto"))
    workdir = prepare_workdir(workdir)
    seeds = [int(config.seed) + s for s in range(int(config.num_seeds))]
    config, datas = inputs.resolve(config, data, seeds)   # validates the config before and after
    run = build_run(config, datas, seeds)
    schedule, extra, timing = run_stages(run, workdir)
    stacker = evaluation.make_stacking_fitter(
        task=config.task, n_train=run.inputs["y_train"].shape[1],
        num_members=run.spec.num_members, num_classes=config.num_classes,
        epochs=config.ensembles.meta_learner_epochs, batch_size=config.train.batch_size,
        learning_rate=config.ensembles.meta_learner_lr)
    ev = evaluation.evaluate_runs(
        schedule, benchmark=extra.get("baselines"), coop=extra.get("coop"),
        ys={sp: np.asarray(run.inputs[f"y_{sp}"]) for sp in SPLITS}, stacker=stacker,
        stack_keys=run.stack_keys, task=config.task)
    results = evaluation.assemble_results(
        ev, dataset=datas[0].name, setting=config.data.setting, seeds=seeds, task=config.task,
        rho_list=config.rho_list, clusters=schedule.clusters, weights=schedule.weights,
        dims=run.spec.dims, b1_warm_start=not config.warm_start_b1)
    timing["total_s"] = time.time() - start
    results["timing"] = timing
    results["config"] = config.to_dict()
    check_finite({k: v for k, v in results["test"].items()}, "the test metrics")
    results["run_info"] = run_info.run_info()
    if is_writer():
        if config.get("figures", False):  # drawn before results.json: a finished run has both
            drawn = cohort_figures.draw_metafusion_figures(workdir, results=results)
            results["figures"] = {k: os.path.relpath(v, workdir) for k, v in drawn.items()}
        write_json_atomic(os.path.join(workdir, "results.json"), results)
    return results

