"""Rho-runs of a cohort as jitted programs, run in epoch chunks; the rho schedule with bug B1.

One rho-run (spec 2.3, 3, 8): `epochs` epochs of shuffled minibatch mutual learning; after each
epoch the full-batch validation task loss of every member; per member the params AND Adam state
of the best epoch (strict `<`, as the reference) are kept inside the loop with `jnp.where` over
the member axis. The epoch loop is a `lax.while_loop` over [first, last) with traced bounds, so
one compiled program runs a whole stage or any chunk of it, with identical numbers; epoch e
shuffles with fold_in(key, e) (keys are derived, never saved).

Axes: params [M, ...] for one run, [R, M, ...] over rho values, [S, R, M, ...] over seeds (data
leaves lead with S). `run_stage` runs a stage in chunks of epochs, calling a hook between chunks
(checkpoints) and resuming from a `records.Progress`. `run_schedule` chains the rho=0 stage, the
host divergence weights and all positive rho values (one program), with the reference's warm
start (bug B1) as a flag and optionally the other B1 arm, and chooses rho*.

Letters: S seeds, R rho values, M members, E epochs, N rows, C outputs.
"""
import functools
from typing import Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.metafusion.mutual import CohortStep
from metafusion_jax.metafusion.records import Progress, RunState, StageRecord, WarmState
from metafusion_jax.metafusion import records
from metafusion_jax.training.xla_flags import one_shot_jit

INDEP, MUTUAL, B1_OTHER = "indep", "mutual", "b1_other"


class RunResult(NamedTuple):
    """best_params / best_opt_state: trees [.., M, ...] of the best-val epoch per member;
    best_val [.., M]; val_curve [.., E, M] validation task loss per epoch;
    train_task [.., E, M] mean minibatch task loss per epoch."""
    best_params: object
    best_opt_state: object
    best_val: jnp.ndarray
    val_curve: jnp.ndarray
    train_task: jnp.ndarray


class Program(NamedTuple):
    """Un-jitted programs; data = {"x_train": tuple of K [N, .], "y_train": [N],
    "x_val": tuple of K [N_v, .], "y_val": [N_v]}.

    run(params, opt_state, data, rho, w, key) -> RunResult: one whole rho-run, params [M, ...].
    run_rhos(params [R,M..], opt_state [R,M..], data, rho [R], w [R, M], keys [R]).
    run_seeds(params [S,R,M..], opt_state [S,R,M..], data [S..], rho [R], w [S,R,M], keys [S,R]).
    init_seeds(params [S,R,M..], opt_state [S,R,M..]) -> RunState before epoch 0.
    run_epochs_seeds(state, data [S..], rho [R], w [S,R,M], keys [S,R], first, last) -> RunState
      after epochs [first, last) (int32 scalars).
    epochs: E.
    """
    run: Callable
    run_rhos: Callable
    run_seeds: Callable
    init_seeds: Callable
    run_epochs_seeds: Callable
    epochs: int


def _where_members(improve, new, old):
    """Per member (leading axis M): new where improve else old, for every leaf of a tree."""
    def pick(n, o):
        return jnp.where(improve.reshape(improve.shape + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(pick, new, old)


def make_program(step: CohortStep, *, n_train: int, batch_size: int, epochs: int) -> Program:
    """Builds the rho-run programs.

    Args:
      step: from `mutual.make_cohort_step`.
      n_train: N training rows (static; the last batch is padded and masked when B does not
        divide N, like PyTorch's smaller last batch).
      batch_size: B (reference 64).
      epochs: E (reference 10 or 30); every epoch runs (no early stopping, B14).
    """
    for name, value in (("n_train", n_train), ("batch_size", batch_size), ("epochs", epochs)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    nb = -(-n_train // batch_size)
    mask = (jnp.arange(nb * batch_size) < n_train).astype(jnp.float32).reshape(nb, batch_size)
    counts = mask.sum(axis=1)

    def init_state(params, opt_state):
        m = jax.tree.leaves(params)[0].shape[0]
        zeros = jnp.zeros((epochs, m), jnp.float32)
        return RunState(params, opt_state, params, opt_state,
                        jnp.full((m,), jnp.inf, jnp.float32), zeros, zeros)

    def epoch(state, data, rho, w, key, e):
        xs, y = data["x_train"], data["y_train"]

        def batch_step(carry, inp):
            params, opt_state = carry
            idx, batch_mask = inp
            xb = tuple(x[idx] for x in xs)
            params, opt_state, aux = step.step(params, opt_state, xb, y[idx], batch_mask, rho, w)
            return (params, opt_state), aux["task"]

        perm = jax.random.permutation(jax.random.fold_in(key, e), n_train)
        perm = jnp.pad(perm, (0, nb * batch_size - n_train)).reshape(nb, batch_size)
        (params, opt_state), tasks = jax.lax.scan(
            batch_step, (state.params, state.opt_state), (perm, mask))
        val = step.val_task(params, data["x_val"], data["y_val"])
        improve = val < state.best_val
        # Train task loss per member weighted by the valid rows of each batch.
        train = jnp.sum(tasks * counts[:, None], axis=0) / n_train
        return RunState(params, opt_state, _where_members(improve, params, state.best_params),
                        _where_members(improve, opt_state, state.best_opt_state),
                        jnp.where(improve, val, state.best_val), state.val_curve.at[e].set(val),
                        state.train_task.at[e].set(train))

    def run_epochs(state, data, rho, w, key, first, last):
        def body(carry):
            e, s = carry
            return e + 1, epoch(s, data, rho, w, key, e)
        return jax.lax.while_loop(lambda c: c[0] < last, body,
                                  (jnp.asarray(first, jnp.int32), state))[1]

    def run(params, opt_state, data, rho, w, key):
        s = run_epochs(init_state(params, opt_state), data, rho, w, key, 0, epochs)
        return RunResult(s.best_params, s.best_opt_state, s.best_val, s.val_curve, s.train_task)

    run_rhos = jax.vmap(run, in_axes=(0, 0, None, 0, 0, 0))
    run_seeds = jax.vmap(run_rhos, in_axes=(0, 0, 0, None, 0, 0))
    init_seeds = jax.vmap(jax.vmap(init_state))
    epochs_rhos = jax.vmap(run_epochs, in_axes=(0, None, 0, 0, 0, None, None))
    epochs_seeds = jax.vmap(epochs_rhos, in_axes=(0, 0, None, 0, 0, None, None))
    return Program(run, run_rhos, run_seeds, init_seeds, epochs_seeds, int(epochs))


@functools.lru_cache(maxsize=64)
def _jit(fn):
    """One jitted wrapper per program function, so every stage call hits the same cache."""
    return jax.jit(fn)


def _f32(w):
    """float32 w (a device array stays where it is: it may span processes)."""
    return w.astype(jnp.float32) if isinstance(w, jax.Array) else np.asarray(w, np.float32)


def _placed(placement):
    """(jit, host, put, replicate) of a `placement.Placement`, or of the default device (None)."""
    if placement is None:
        return _jit, lambda t: jax.tree.map(np.asarray, t), lambda t: t, jnp.asarray
    return placement.jit, placement.host, placement.put, placement.replicate


def _check_finite(state: RunState, first: int, last: int, where: str) -> None:
    """FloatingPointError when a loss of epochs [first, last) or a best loss is not finite."""
    # A sum is non-finite iff some entry is (float64: no overflow of large finite losses).
    parts = {"val_curve": np.asarray(state.val_curve)[..., first:last, :],
             "train_task": np.asarray(state.train_task)[..., first:last, :],
             "best_val": state.best_val}
    bad = [k for k, v in parts.items() if not np.isfinite(np.sum(np.asarray(v, np.float64)))]
    if bad:
        raise FloatingPointError(
            f"non-finite values in {bad} of {where} (epochs {first}..{last - 1}). Nothing of "
            "these epochs was saved; lower the learning rate or check the inputs for extremes.")


def run_stage(program: Program, params, opt_state, data, rhos: Sequence[float], w, keys, *,
              name: str = "stage", chunk_epochs: Optional[int] = None,
              progress: Optional[Progress] = None, on_chunk: Optional[Callable] = None,
              predict: Optional[Callable] = None, keep_warm: bool = False,
              placement=None) -> StageRecord:
    """Trains R rho-runs of S seeds for `program.epochs` epochs, in chunks of epochs.

    Args:
      program: from `make_program`.
      params, opt_state: initial state, leaves [S, R, M, ...] (ignored when resuming).
      data: as `Program`, every leaf with a leading S axis.
      rhos: R host rho values; w: [S, R, M] divergence weights; keys: [S, R] run keys.
      name: the stage name (in `Progress` and error messages).
      chunk_epochs: epochs per chunk (default: all); results do not depend on it.
      progress: resume this stage from a saved `Progress` (same name) instead of epoch 0.
      on_chunk: called with `Progress(name, epochs done, state)` after every chunk but the last
        (after the finiteness check: a non-finite chunk is never handed to it).
      predict: best_params [S, R, M, ...] -> `records.Predictions` [S, R, M, N, C], or None.
      keep_warm: keep the best params and Adam state in the record (`StageRecord.warm`).
      placement: a `placement.Placement` (mesh, seeds padded to the "runs" size): the state,
        w and keys go onto the mesh, the records come back with the real seeds only; None:
        the default device, as given. `progress.state` may hold the real seeds only (restored).

    Returns:
      The host `StageRecord` [S, R, ...].

    Raises:
      ValueError: bad chunk_epochs or a progress of another stage; FloatingPointError: a
        non-finite loss.
    """
    epochs = program.epochs
    chunk = epochs if chunk_epochs is None else int(chunk_epochs)
    if chunk < 1:
        raise ValueError(f"chunk_epochs must be >= 1, got {chunk_epochs}.")
    if progress is not None and (progress.stage != name or not 0 <= progress.epoch <= epochs):
        raise ValueError(f"cannot resume stage {name!r} ({epochs} epochs) from progress of "
                         f"{progress.stage!r} at epoch {progress.epoch}.")
    jit, host, put, scalar = _placed(placement)
    put_stage = (lambda t, d=None: put(t)) if placement is None else placement.put_stage
    rho_arr, w, keys = scalar(np.asarray(rhos, np.float32)), put_stage(_f32(w), 2), \
        put_stage(keys)
    if progress is not None:
        state, first = put_stage(progress.state), int(progress.epoch)
    else:
        state = jit(program.init_seeds)(put_stage(params, 2), put_stage(opt_state, 2))
        first = 0
    while first < epochs:
        last = min(first + chunk, epochs)
        state = jit(program.run_epochs_seeds)(state, data, rho_arr, w, keys,
                                              scalar(np.int32(first)), scalar(np.int32(last)))
        losses = state._replace(params=None, opt_state=None, best_params=None,
                                best_opt_state=None)
        _check_finite(host(losses), first, last, f"stage {name} (rho {list(rhos)})")
        first = last
        if last < epochs and on_chunk is not None:
            on_chunk(Progress(name, last, state))
    preds = None if predict is None else predict(state.best_params)
    warm = WarmState(state.best_params, state.best_opt_state) if keep_warm else None
    out = StageRecord(None, state.best_val, state.val_curve, state.train_task, preds, warm)
    return host(out)._replace(rhos=np.asarray(rhos, np.float64))


def compile_stage(program: Program, params, opt_state, data, rhos: Sequence[float], w,
                  keys, placement=None) -> None:
    """Compiles the programs `run_stage` calls for these arguments by running zero epochs.

    Args: as `run_stage` (built the same way, e.g. with `stage_init`, so the later calls hit
    the compiled cache). Used by benchmarks to keep compilation out of timed runs.
    """
    jit, _, put, scalar = _placed(placement)
    put_stage = (lambda t, d=None: put(t)) if placement is None else placement.put_stage
    state = jit(program.init_seeds)(put_stage(params, 2), put_stage(opt_state, 2))
    jax.block_until_ready(jit(program.run_epochs_seeds)(
        state, data, scalar(np.asarray(rhos, np.float32)), put_stage(_f32(w), 2),
        put_stage(keys), scalar(np.int32(0)), scalar(np.int32(0))))


def choose_rho(best_val: np.ndarray, cluster_idxs: Optional[Sequence[int]] = None) -> int:
    """Index of rho* = argmin_r mean(best_val[r, C]) (all members if C is None; first on ties).

    Args:
      best_val: [R, M] best validation task loss per rho and member.
      cluster_idxs: the best cluster C from the rho=0 clustering, or None.
    """
    best_val = np.asarray(best_val)
    cols = np.arange(best_val.shape[-1]) if cluster_idxs is None else np.asarray(cluster_idxs)
    return int(np.argmin(best_val[:, cols].mean(axis=1)))


def rho_star(best_val, clusters: Sequence, *, largest: bool = False) -> np.ndarray:
    """Per-seed rho* index [S] from best_val [S, R, M] (`choose_rho` with each seed's cluster).

    With `largest` the last rho (the reference's adversarial arm is compared there, spec 2.2).
    """
    best_val = np.asarray(best_val)
    if largest:
        return np.full(best_val.shape[0], best_val.shape[1] - 1)
    return np.array([choose_rho(best_val[s], clusters[s]) for s in range(best_val.shape[0])])


class ScheduleResult(NamedTuple):
    """Everything of a rho schedule over S seeds (R = len(rhos), rho=0 first).

    indep: StageRecord [S, 1, ...] of rho = 0 (with `warm` when a B1 arm starts from it).
    mutual: StageRecord [S, R - 1, ...] of the positive rho values (None if there are none).
    weights: float32 [S, M] divergence weights used for rho > 0.
    clusters: S best-cluster index arrays (or None).
    rho_star_index: int [S]; rho_star: float [S].
    b1_other: StageRecord [S, 1, ...] of the first positive rho trained the other B1 way, or None.
    b1_rho_star_index: int [S] rho* of the schedule with that arm, or None.
    """
    indep: StageRecord
    mutual: Optional[StageRecord]
    weights: np.ndarray
    clusters: list
    rho_star_index: np.ndarray
    rho_star: np.ndarray
    b1_other: Optional[StageRecord] = None
    b1_rho_star_index: Optional[np.ndarray] = None

    @property
    def result(self) -> StageRecord:
        """The schedule's record [S, R, ...] (rho = 0 first)."""
        return records.join(self.indep, self.mutual)

    @property
    def b1_result(self) -> Optional[StageRecord]:
        """`result` with the first positive rho from the other B1 arm (None without it)."""
        return None if self.b1_other is None else records.replace_rho(self.result, 1,
                                                                      self.b1_other)


def _weights(weight_fn, best0: np.ndarray):
    fns = list(weight_fn) if isinstance(weight_fn, (list, tuple)) else [weight_fn] * len(best0)
    if len(fns) != len(best0):
        raise ValueError(f"weight_fn: expected one function or {len(best0)} (one per seed), got "
                         f"{len(fns)}.")
    w_list, clusters = zip(*(fn(b) for fn, b in zip(fns, best0)))
    return np.stack([np.asarray(w, np.float32) for w in w_list]), list(clusters)


@functools.partial(one_shot_jit, static_argnames="n_rhos")
def stage_init(params0, opt0, n_rhos: int, *, warm: Optional[WarmState]):
    """Initial (params, opt) [S, n_rhos, M, ...] of a stage: params0 / opt0 [S, M, ...] for every
    rho; with a `warm` state (bug B1) rho index 0 starts from its slot 0 instead. (jitted; pass
    `warm` by keyword, None for none.)"""
    add_r = lambda t: jax.tree.map(lambda a: jnp.repeat(a[:, None], n_rhos, 1), t)
    params, opt = add_r(params0), add_r(opt0)
    if warm is not None:
        put = lambda a, b: a.at[:, 0].set(b[:, 0])
        params = jax.tree.map(put, params, warm.params)
        opt = jax.tree.map(put, opt, warm.opt_state)
    return params, opt


def run_schedule(program: Program, step: CohortStep, params0, data, rhos: Sequence[float], *,
                 keys, weight_fn, warm_start: bool = False, report_both_b1: bool = False,
                 largest_rho: bool = False, chunk_epochs: Optional[int] = None,
                 predict: Optional[Callable] = None,
                 done: Optional[Mapping[str, StageRecord]] = None,
                 progress: Optional[Progress] = None, on_chunk: Optional[Callable] = None,
                 on_stage: Optional[Callable] = None, placement=None) -> ScheduleResult:
    """rho=0 stage -> host weights -> every rho > 0 (one program) [-> the other B1 arm] -> rho*.

    Args:
      program, step: from `make_program`, `mutual.make_cohort_step`.
      params0: initial cohort params, leaves [S, M, ...]; every rho starts from them and a fresh
        Adam state (as the reference resets to the same initial weights per rho).
      data: as `Program`, every leaf with a leading S axis.
      rhos: host list, rhos[0] must be 0 (the independent cohort the weights come from).
      keys: PRNG keys [S]; the run of rho index r uses fold_in(keys[s], r).
      weight_fn: np best_val0 [M] -> (w [M], cluster_idxs or None), or a sequence of S such
        functions (one per seed, e.g. KMeans seeded by the seed).
      warm_start: bug B1: the first positive rho starts from the rho=0 best params AND best Adam
        state of each member instead of params0.
      report_both_b1: also train the first positive rho the other way (stage "b1_other").
      largest_rho: rho* is the largest rho (adversarial weights, spec 2.2), not the argmin.
      chunk_epochs, predict: see `run_stage` (same for every stage).
      done: finished StageRecords by stage name ("indep", "mutual", "b1_other") to reuse.
      progress: the `Progress` of the stage that was running when the run was stopped.
      on_chunk: hook `Progress -> None` between chunks (see `run_stage`).
      on_stage: hook (name, StageRecord) -> None after each stage trained here.
      placement: see `run_stage` (params0, data and keys already on its mesh, [S_pad, ...]).

    Returns:
      A ScheduleResult (its records hold predictions when `predict` is given).

    Raises:
      ValueError: bad rhos, weight functions or `done` records; FloatingPointError: a
        non-finite loss.
    """
    rhos = [float(r) for r in rhos]
    if not rhos or rhos[0] != 0.0 or any(r <= 0 for r in rhos[1:]):
        raise ValueError(f"rhos must start with 0 followed by positive values, got {rhos}.")
    if report_both_b1 and len(rhos) < 2:
        raise ValueError(f"report_both_b1 needs a positive rho, got rhos {rhos}.")
    done = dict(done or {})
    opt0 = jax.vmap(step.init_opt)(params0)
    n_seeds, n_members = jax.tree.leaves(params0)[0].shape[:2]
    fold = jax.vmap(lambda k, r: jax.random.fold_in(k, r), in_axes=(0, None))
    run_keys = lambda rs: jnp.stack([fold(keys, r) for r in rs], axis=1)     # [S, len(rs)]

    def stage(name, params, opt, stage_rhos, w, k, keep_warm=False):
        if name in done:
            return done[name]
        record = run_stage(program, params, opt, data, stage_rhos, w, k, name=name,
                           chunk_epochs=chunk_epochs, on_chunk=on_chunk, predict=predict,
                           keep_warm=keep_warm, placement=placement, progress=progress if (
                               progress is not None and progress.stage == name) else None)
        done[name] = record
        if on_stage is not None:
            on_stage(name, record)
        return record

    put = (lambda t: t) if placement is None else placement.put
    p_init, o_init = stage_init(params0, opt0, 1, warm=None)
    indep = stage(INDEP, p_init, o_init, [0.0], jnp.ones((n_seeds, 1, n_members), jnp.float32),
                  run_keys([0]), keep_warm=warm_start or report_both_b1)
    if (warm_start or report_both_b1) and indep.warm is None:
        raise ValueError("done['indep'] has no warm state; the B1 warm start needs the rho=0 "
                         "best params and Adam state (keep_warm).")
    weights, clusters = _weights(weight_fn, indep.best_val[:, 0])
    mutual, other, b1_star = None, None, None
    if len(rhos) > 1:
        r_pos = len(rhos) - 1
        w_pos = jnp.repeat(jnp.asarray(weights)[:, None], r_pos, axis=1)
        p_init, o_init = stage_init(params0, opt0, r_pos,
                                    warm=put(indep.warm) if warm_start else None)
        mutual = stage(MUTUAL, p_init, o_init, rhos[1:], w_pos, run_keys(range(1, len(rhos))))
    if report_both_b1:
        p_init, o_init = stage_init(params0, opt0, 1,
                                    warm=None if warm_start else put(indep.warm))
        other = stage(B1_OTHER, p_init, o_init, rhos[1:2], w_pos[:, :1], run_keys([1]))
    out = ScheduleResult(indep, mutual, weights, clusters, None, None, other)
    idx = rho_star(out.result.best_val, clusters, largest=largest_rho)
    if report_both_b1:
        b1_star = rho_star(out.b1_result.best_val, clusters, largest=largest_rho)
    return out._replace(rho_star_index=idx, rho_star=np.asarray(rhos)[idx],
                        b1_rho_star_index=b1_star)
