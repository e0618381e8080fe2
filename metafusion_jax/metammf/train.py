"""MetaMMF training loop: BPR training, validation model selection, resumable orbax checkpoints.

`train_and_evaluate(config, workdir, data=None)` is the one entry point (big_vision / flax
examples style): it reads a `ml_collections.ConfigDict` (see `configs/metammf.py`), trains any
recommender of `metammf.models.MODELS` on config.data's dataset (or on `data`, your own
`InteractionData`), evaluates validation Recall@20 every `config.eval_every` epochs with early
stopping, restores the best checkpoint, evaluates test once and writes `workdir/results.json`.
Config validation and building the data, model and inputs live in `metammf/inputs.py`.

A killed run resumes from `workdir/checkpoints/latest` and ends with the same metrics as an
uninterrupted one: negatives come from `fold_in(sample_key, epoch)` and dropout from
`fold_in(dropout_key, step)`, so no key is ever checkpointed. The saved config carries a
fingerprint of the data, so a workdir of a run on other data is refused.
"""
import json
import os
import time
from typing import Callable, NamedTuple
import warnings

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from metafusion_jax.data.rec import interactions
from metafusion_jax.figures import metammf_run as run_figures
from metafusion_jax.metammf import coldstart
from metafusion_jax.metammf import losses
from metafusion_jax.metammf import placement as placement_lib
from metafusion_jax.metammf import sampling
from metafusion_jax.metammf.inputs import LOADER_FIELDS, LOADERS, build  # noqa: F401
from metafusion_jax.metammf.inputs import load_data, validate_config
from metafusion_jax.metrics import ranking
from metafusion_jax.training import artifacts, checkpoints, writers
from metafusion_jax.training import mesh as mesh_lib
from metafusion_jax.training import run_info

# Fields that may change between a killed run and its resumption; anything else must match.
# config.mesh may change too: a checkpoint restores onto any mesh shape.
RUN_LENGTH_FIELDS = ("num_epochs", "max_epochs_this_run", "progress", "mesh", "figures")
# Fields of older runs that no longer exist (data_parallel became config.mesh): not compared.
REMOVED_FIELDS = ("data_parallel",)
SELECTION_METRIC = "recall@20"
FINGERPRINT_FIELD = "data.fingerprint"
# Config fields added after runs were saved without them -> the value those runs had, so an
# older workdir still resumes.
LATER_FIELDS = {"data.standardize": False, "data.cold_items": 0.0, "figures": False}
# An untrained BPR model has loss log 2 = 0.69; far above it, scores are out of scale.
LOSS_SCALE_WARNING = 100.0


def _canonical(config, data, own_data):
    """The config as flat JSON data ({"model.name": ..., "learning_rate": ...}) plus the data's
    fingerprint under "data.fingerprint"; with own_data, without the unused loader fields."""
    flat = {}

    def visit(prefix, node):
        for key, value in node.items():
            if isinstance(value, dict):
                visit(f"{prefix}{key}.", value)
            else:
                flat[prefix + key] = value

    visit("", config.to_dict())
    if own_data:
        flat = {k: v for k, v in flat.items() if k not in {f"data.{f}" for f in LOADER_FIELDS}}
    flat[FINGERPRINT_FIELD] = interactions.fingerprint(data)
    return json.loads(json.dumps(flat, default=str))


def _check_resumable(workdir, saved_meta, current):
    """Raises ValueError if the saved run is not a MetaMMF run or its config or data differ."""
    saved = saved_meta.get("config")
    if not isinstance(saved, dict):  # e.g. a Meta Fusion run: its config is a JSON string
        raise ValueError(
            f"workdir {workdir} holds a checkpoint of a different run: not a MetaMMF run (its "
            f"saved config is a {type(saved).__name__}, not MetaMMF's field dict). Use a new "
            "--workdir for this run; that one belongs to the other run.")
    saved = {**LATER_FIELDS, **saved}
    diff = sorted(k for k in set(saved) | set(current)
                  if k not in RUN_LENGTH_FIELDS + REMOVED_FIELDS
                  and saved.get(k) != current.get(k))
    if diff:
        details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in diff)
        what = "a run on different data" if FINGERPRINT_FIELD in diff else "a different run"
        raise ValueError(
            f"workdir {workdir} holds a checkpoint of {what} ({details}). Only "
            f"{RUN_LENGTH_FIELDS} may change on resume: use a fresh --workdir, or restore the "
            "saved config and data (results would not be comparable otherwise).")


def _resume(ckpts, state, meta, workdir):
    """(state, meta, restored step or None): the latest checkpoint, if it is this run's."""
    saved = ckpts.latest_meta()  # compare configs before orbax compares array trees
    if saved is None:
        return state, meta, None
    _check_resumable(workdir, saved.meta, meta["config"])
    restored = ckpts.restore_latest(state)
    meta = {**restored.meta, "config": meta["config"]}
    logging.info("resumed from epoch %d (step %d) in %s", meta["epoch"], meta["step"], workdir)
    return restored.state, meta, meta["step"]


def _warn(message):
    """absl log line plus a Python warning (what a notebook or a test sees)."""
    logging.warning("%s", message)
    warnings.warn(message, UserWarning, stacklevel=3)


def make_optimizer(learning_rate, weight_decay):
    """Adam with torch-style coupled L2 (decay added to the gradient before Adam)."""
    if weight_decay == 0:
        return optax.adam(learning_rate)
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))


def make_train_step(model, tx, constrain_rows=None):
    """Returns the un-jitted step (params, opt_state, inputs, batch, key) -> (params, opt, loss).

    constrain_rows: optional x -> x applied to inputs["features"] [I, F] before the model
    (`placement.constrain_rows`: the item axis of the fusion split over the mesh).
    """

    def loss_fn(params, inputs, batch, key):
        if constrain_rows is not None:
            inputs = {**inputs, "features": constrain_rows(inputs["features"])}
        user_emb, item_emb = model.embed(params, inputs, key, True)
        return losses.bpr_loss(user_emb, item_emb, batch["users"], batch["pos"], batch["neg"],
                               batch["weight"])

    def train_step(params, opt_state, inputs, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def make_sampler(config, data, key, exclude_items=None):
    """BPRSampler: per-epoch resampled negatives, or the reference's static triples reshuffled.

    `exclude_items` (the held-out cold items) are never drawn as negatives."""
    if config.negatives == "static":
        triples = sampling.static_triples(data.train, n_users=data.n_users, n_items=data.n_items,
                                          key=key, num_negatives=config.num_negatives,
                                          exclude_items=exclude_items)
        return sampling.make_static_sampler(triples, batch_size=config.batch_size)
    return sampling.make_bpr_sampler(data.train, n_users=data.n_users, n_items=data.n_items,
                                     num_negatives=config.num_negatives,
                                     batch_size=config.batch_size, exclude_items=exclude_items)


def _evaluate(embed_eval, params, inputs, data, eval_pairs, exclude_pairs, chunk_size):
    user_emb, item_emb = embed_eval(params, inputs)
    if jax.process_count() > 1:  # replicated on a multi-process mesh: rank this process's copy
        user_emb, item_emb = (np.asarray(x.addressable_data(0)) for x in (user_emb, item_emb))
    metrics = ranking.ranking_metrics(user_emb, item_emb, data.train, eval_pairs, ks=(10, 20),
                                      exclude_pairs=exclude_pairs, chunk_size=chunk_size)
    return {k: float(v) for k, v in metrics.items()}


class Prepared(NamedTuple):
    """Everything a run needs before its loop, placed on the mesh (see `prepare`).

    data: InteractionData; model: Recommender; inputs: dict of global arrays ("features"
    [I, F], "graph", model extras); tx: optax transformation; state: {"params", "opt_state"};
    placement: `placement.Placement`; sampler: BPR sampler; step_fn: the un-jitted step
    (params, opt_state, inputs, batch, key) -> (params, opt_state, loss); keys: (sample_key,
    dropout_key); cold: the `interactions.ColdSplit` of a cold-start run (config.data.cold_items
    > 0; `data` is then its warm part), else None.
    """
    data: object
    model: object
    inputs: dict
    tx: object
    state: dict
    placement: object
    sampler: object
    step_fn: Callable
    keys: tuple
    cold: object = None


def prepare(config, data=None):
    """Data, model, optimiser, placed state and inputs, sampler and step of a validated config.

    The benchmarks call this too, so they time and cost exactly what the trainer runs.
    With config.data.cold_items > 0 the items are split first (`interactions.cold_item_split`):
    the model trains on the warm part and never samples a cold item as a negative.
    """
    cold = None
    if config.data.get("cold_items", 0.0):
        coldstart.check_model(config.model.name)
        cold = interactions.cold_item_split(load_data(config, data), config.data.cold_items,
                                            seed=config.data.seed)
        data = cold.data
    data, model, inputs = build(config, data)
    tx = make_optimizer(config.learning_rate, config.weight_decay)
    init_key, sample_key, dropout_key, static_key = jax.random.split(
        jax.random.key(config.seed), 4)

    def init_state(key):  # one compile for all of init (eager init compiles every random op)
        params = model.init(key)
        return {"params": params, "opt_state": tx.init(params)}

    placement = placement_lib.make_placement(mesh_lib.make_mesh(config.mesh))
    state, _ = placement_lib.init_state(init_state, init_key, placement,
                                        {data.n_users, data.n_items})
    inputs = placement_lib.put_host(inputs, placement_lib.input_shardings(inputs, placement))
    step_fn = make_train_step(model, tx, lambda x: placement_lib.constrain_rows(x, placement))
    sampler = make_sampler(config, data, static_key,
                           exclude_items=None if cold is None else cold.cold_items)
    return Prepared(data, model, inputs, tx, state, placement, sampler, step_fn,
                    (sample_key, dropout_key), cold)


def train_and_evaluate(config, workdir, data=None):
    """Trains config.model on config.data (or `data`); returns the results dict of results.json.

    If `config.max_epochs_this_run` stops the run before it is finished, nothing is written to
    results.json and `{"status": "paused", "epoch": ...}` is returned; calling again with the same
    workdir (and the same data) resumes.

    Args:
      config: a ConfigDict of `configs/metammf.py`.
      workdir: run directory (checkpoints, logs, results.json).
      data: optional `InteractionData` (e.g. `InteractionData.from_pairs(...)` or any loader's
        output) to train on. Then the config.data fields of `inputs.LOADER_FIELDS` (source,
        dir, name, seed, the synthetic sizes, feature_files) are not used, nor compared on
        resume (the data's fingerprint is); config.data.pca_dims still applies. It is validated again
        (`validate_interactions`, source "train_and_evaluate(data=...)").

    Raises:
      ValueError: on a bad config field, bad data, a config that contradicts the data (e.g.
        pca_dims of a modality the data lacks) -- all before anything is trained or written --
        a workdir that is a file or not writable, a workdir holding a different run (also a
        Meta Fusion run) or a run on different data, or a damaged checkpoint in it.
      FloatingPointError: on a non-finite epoch loss or non-finite parameters after an epoch
        (nothing saved for that epoch).

    Warns:
      UserWarning (and an absl warning): an epoch loss above LOSS_SCALE_WARNING, and (at build)
        item features far outside the ~1 scale (see `config.data.standardize`).
    """
    validate_config(config)
    t_start = time.perf_counter()

    # ---------------------------------------------------------------- data, model, placement
    own_data = data is not None
    run = prepare(config, data)
    data, state = run.data, run.state
    workdir = artifacts.prepare_workdir(workdir)

    # ---------------------------------------------------------------- resume
    meta = {"epoch": 0, "step": 0, "best_val": -1.0, "best_epoch": 0, "best_metrics": {},
            "bad_evals": 0, "stopped": False, "train_s": 0.0, "eval_s": 0.0, "compile_s": 0.0,
            "steps_timed": 0, "epochs_timed": 0, "wall_s": 0.0,
            "config": _canonical(config, data, own_data)}
    ckpts, writer = checkpoints.RunCheckpoints(workdir), None
    try:
        state, meta, resumed_step = _resume(ckpts, state, meta, workdir)
        # A fresh run sets aside the logs (and results) of whatever ran here before.
        writer = writers.open_run_log(workdir, resumed_step, also_stale=("results.json",),
                                      enabled=mesh_lib.is_writer())
        return _train_loop(config, workdir, run, state, meta, ckpts, writer, t_start)
    finally:  # also on errors: orbax's background threads must not outlive the managers
        ckpts.close()
        if writer is not None:
            writer.close()


def _train_loop(config, workdir, run, state, meta, ckpts, writer, t_start):
    """Epochs from meta["epoch"] on, validation and saves, then test once and results.json."""
    data, model, inputs, sampler, placement = (run.data, run.model, run.inputs, run.sampler,
                                               run.placement)
    sample_key, dropout_key = run.keys
    wall_before = meta["wall_s"]  # wall time of earlier (killed or paused) runs

    # ---------------------------------------------------------------- compile once
    def batch_at(batches, b):
        batch = {k: getattr(batches, k)[b] for k in ("users", "pos", "neg", "weight")}
        return placement_lib.put_batch(batch, placement)  # each process feeds its own rows

    first = sampler.epoch(sample_key, meta["epoch"] + 1)
    example = batch_at(first, 0)
    t0 = time.perf_counter()
    train_step = jax.jit(run.step_fn, donate_argnums=(0, 1)).lower(
        state["params"], state["opt_state"], inputs, example, dropout_key).compile()
    meta["compile_s"] += time.perf_counter() - t0
    eval_key = jax.random.key(0)  # unused when train=False; embed's signature wants one
    # Several processes: every one gets the full embeddings (each computes the same metrics).
    embed_eval = jax.jit(lambda p, x: model.embed(p, x, eval_key, False),
                         out_shardings=placement.replicated if jax.process_count() > 1 else None)
    periodic_sync = placement_lib.needs_periodic_sync(placement)
    # A cold-start run ranks val/test among the warm items only: every (user, cold item) pair is
    # excluded (the cold items are scored on their own at the end, `coldstart.evaluate_cold`).
    warm_only = None if run.cold is None else np.stack(np.meshgrid(
        np.arange(data.n_users, dtype=np.int32), run.cold.cold_items.astype(np.int32),
        indexing="ij"), axis=-1).reshape(-1, 2)

    # ---------------------------------------------------------------- train
    params, opt_state = state["params"], state["opt_state"]
    epochs_this_run, loss_warned = 0, False
    last_val = meta["best_val"] if meta["best_val"] >= 0 else None  # shown by the progress bar
    start_epoch = epoch = meta["epoch"]
    while epoch < config.num_epochs and not meta["stopped"]:
        if config.max_epochs_this_run and epochs_this_run >= config.max_epochs_this_run:
            return {"status": "paused", "epoch": epoch}
        epoch += 1
        batches = first if epoch == start_epoch + 1 else sampler.epoch(sample_key, epoch)
        weights = batches.weight
        n_steps = weights.shape[0]
        t_epoch = time.perf_counter()
        loss_sum = jnp.zeros((), jnp.float32)
        bar = tqdm.trange(n_steps, desc=f"epoch {epoch}/{config.num_epochs}",
                          disable=not config.progress, leave=False)
        for b in bar:
            step = meta["step"] + b
            batch = batch_at(batches, b)
            params, opt_state, loss = train_step(params, opt_state, inputs, batch,
                                                 jax.random.fold_in(dropout_key, step))
            loss_sum = loss_sum + loss * weights[b].sum()
            if periodic_sync and b % placement_lib.SYNC_EVERY == 0:
                loss.block_until_ready()  # fake CPU devices abort on long collective queues
            if config.progress and (b % 10 == 0 or b == n_steps - 1):
                rate = weights[:b + 1].sum() * config.num_negatives / (
                    time.perf_counter() - t_epoch)
                shown = {} if last_val is None else {"val_recall@20": f"{last_val:.4f}"}
                bar.set_postfix(loss=f"{float(loss):.4f}", triples_per_s=f"{rate:.0f}", **shown)
        epoch_loss = float(loss_sum) / max(float(weights.sum()), 1.0)
        epoch_s = time.perf_counter() - t_epoch
        artifacts.check_finite({"loss": epoch_loss}, f"epoch {epoch} training loss")
        # A NaN gradient can hide behind a finite loss (e.g. dropout rate 1): never save it.
        artifacts.check_finite_tree(params, f"parameters after epoch {epoch}")
        if epoch_loss > LOSS_SCALE_WARNING and not loss_warned:
            loss_warned = True
            _warn(f"epoch {epoch} training loss {epoch_loss:.3g} is far above the loss of an "
                  f"untrained BPR model (log 2 = 0.69): the scores are out of scale and the run "
                  "is unlikely to learn. Check the item feature scale (config.data.standardize="
                  "True standardises every feature column) or lower config.learning_rate.")
        meta.update(epoch=epoch, step=meta["step"] + n_steps, train_s=meta["train_s"] + epoch_s,
                    steps_timed=meta["steps_timed"] + n_steps,
                    epochs_timed=meta["epochs_timed"] + 1)
        epochs_this_run += 1
        writer.write_scalars(meta["step"], {
            "train/loss": epoch_loss, "train/epoch": epoch, "train/epoch_s": epoch_s,
            "train/triples_per_s": weights.sum() * config.num_negatives / epoch_s})

        # ------------------------------------------------------------ validate, select, save
        state = {"params": params, "opt_state": opt_state}
        if epoch % config.eval_every == 0 or epoch == config.num_epochs:
            t_eval = time.perf_counter()
            val = _evaluate(embed_eval, params, inputs, data, data.val, warm_only,
                            config.eval_chunk)
            meta["eval_s"] += time.perf_counter() - t_eval
            writer.write_scalars(meta["step"], {f"val/{k}": v for k, v in val.items()})
            logging.info("epoch %d loss %.5f val %s", epoch, epoch_loss, val)
            last_val = val[SELECTION_METRIC]
            if val[SELECTION_METRIC] > meta["best_val"]:
                meta.update(best_val=val[SELECTION_METRIC], best_epoch=epoch, best_metrics=val,
                            bad_evals=0)
                # best before latest: a kill in between re-runs this epoch identically.
                meta["wall_s"] = wall_before + time.perf_counter() - t_start
                if ckpts.best.latest_step() != meta["step"]:  # else: a killed run saved it
                    ckpts.save_best(meta["step"], state, meta)
                    ckpts.best.wait_until_finished()
            else:
                meta["bad_evals"] += 1
                meta["stopped"] = meta["bad_evals"] >= config.patience
        meta["wall_s"] = wall_before + time.perf_counter() - t_start
        ckpts.save_latest(meta["step"], state, meta)
        ckpts.latest.wait_until_finished()  # the next step donates these buffers
    writer.flush()

    # ---------------------------------------------------------------- test once, best params
    best = ckpts.restore_best(state)
    if best is None:
        raise ValueError(f"no best checkpoint in {workdir}: validation never ran. Set "
                         "config.eval_every <= config.num_epochs.")
    t_eval = time.perf_counter()
    test_exclude = data.val if warm_only is None else np.concatenate([data.val, warm_only])
    test = _evaluate(embed_eval, best.state["params"], inputs, data, data.test, test_exclude,
                     config.eval_chunk)
    meta["eval_s"] += time.perf_counter() - t_eval
    writer.write_scalars(meta["step"], {f"test/{k}": v for k, v in test.items()})
    writer.flush()
    results = {
        "model": config.model.name,
        "dataset": data.name,
        "best_epoch": int(meta["best_epoch"]),
        "val": meta["best_metrics"],
        "test": test,
        "timing": {
            "total_s": wall_before + time.perf_counter() - t_start,
            "per_epoch_s": meta["train_s"] / max(meta["epochs_timed"], 1),
            "per_step_s": meta["train_s"] / max(meta["steps_timed"], 1),
            "eval_s": meta["eval_s"],
            "compile_s": meta["compile_s"],
        },
        "config": config.to_dict(),
        "run_info": run_info.run_info(),
    }
    if run.cold is not None:  # content-only ranking of the held-out items (metammf/coldstart.py)
        results["cold"] = coldstart.evaluate_cold(
            embed_eval, best.state["params"], inputs, config.model.name, run.cold.cold_items,
            run.cold.cold_pairs, config.eval_chunk)
        writer.write_scalars(meta["step"], {f"cold/{k}": v for k, v in results["cold"].items()
                                            if "@" in k})
        writer.flush()
    if config.get("figures", False) and mesh_lib.is_writer():
        results["figures"], modality = run_figures.draw_metammf_run(
            workdir, config.model.name, best.state["params"], inputs["features"], data,
            pca_dims=dict(config.data.pca_dims), fusion_kind=config.model.fusion,
            synthetic=meta["config"].get("data.source") == "synthetic" and {
                k: config.data[k] for k in run_figures.SYNTHETIC_FIELDS})
        if modality is not None:
            results["modality"] = modality
    if mesh_lib.is_writer():
        artifacts.write_json_atomic(os.path.join(workdir, "results.json"), results)
    return results
