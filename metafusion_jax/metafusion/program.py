"""A whole rho-run of a cohort as one jitted program, vmapped over rho values and seeds.

One rho-run (spec 2.3, 3, 8): `epochs` epochs of shuffled minibatch mutual learning; after each
epoch the full-batch validation task loss of every member; per member the params AND Adam state
of the best epoch (strict `<`, as the reference) are kept inside the loop with `jnp.where` over
the member axis. `lax.scan` over epochs and batches: the host is never synced inside a run.

Axes: params [M, ...] for one run, [R, M, ...] over rho values, [S, R, M, ...] over seeds (data
leaves lead with S). `run_schedule` chains the rho=0 stage, the host clustering weights and all
positive rho values (one program), with the reference's warm start (bug B1) as a flag.
"""
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.metafusion.mutual import CohortStep


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

    run(params, opt_state, data, rho, w, key) -> RunResult: one rho-run, params [M, ...].
    run_rhos(params [R,M..], opt_state [R,M..], data, rho [R], w [R, M], keys [R]).
    run_seeds(params [S,R,M..], opt_state [S,R,M..], data [S..], rho [R], w [S,R,M], keys [S,R]).
    """
    run: Callable
    run_rhos: Callable
    run_seeds: Callable


def _where_members(improve, new, old):
    """Per member (leading axis M): new where improve else old, for every leaf of a tree."""
    def pick(n, o):
        return jnp.where(improve.reshape(improve.shape + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(pick, new, old)


def make_program(step: CohortStep, *, n_train: int, batch_size: int, epochs: int) -> Program:
    """Builds the rho-run program.

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

    def run(params, opt_state, data, rho, w, key):
        xs, y = data["x_train"], data["y_train"]

        def batch_step(carry, inp):
            params, opt_state = carry
            idx, mask = inp
            xb = tuple(x[idx] for x in xs)
            params, opt_state, aux = step.step(params, opt_state, xb, y[idx], mask, rho, w)
            return (params, opt_state), aux["task"]

        def epoch(carry, e):
            params, opt_state, best_p, best_o, best_val = carry
            perm = jax.random.permutation(jax.random.fold_in(key, e), n_train)
            perm = jnp.pad(perm, (0, nb * batch_size - n_train)).reshape(nb, batch_size)
            mask = (jnp.arange(nb * batch_size) < n_train).astype(jnp.float32)
            (params, opt_state), tasks = jax.lax.scan(
                batch_step, (params, opt_state), (perm, mask.reshape(nb, batch_size)))
            val = step.val_task(params, data["x_val"], data["y_val"])
            improve = val < best_val
            best_p = _where_members(improve, params, best_p)
            best_o = _where_members(improve, opt_state, best_o)
            best_val = jnp.where(improve, val, best_val)
            # Train task loss per member weighted by the valid rows of each batch.
            counts = mask.reshape(nb, batch_size).sum(axis=1)
            train = jnp.sum(tasks * counts[:, None], axis=0) / n_train
            return (params, opt_state, best_p, best_o, best_val), (val, train)

        m = w.shape[0]
        init = (params, opt_state, params, opt_state, jnp.full((m,), jnp.inf, jnp.float32))
        (_, _, best_p, best_o, best_val), (curve, train) = jax.lax.scan(
            epoch, init, jnp.arange(epochs))
        return RunResult(best_p, best_o, best_val, curve, train)

    run_rhos = jax.vmap(run, in_axes=(0, 0, None, 0, 0, 0))
    run_seeds = jax.vmap(run_rhos, in_axes=(0, 0, 0, None, 0, 0))
    return Program(run, run_rhos, run_seeds)


def choose_rho(best_val: np.ndarray, cluster_idxs: Optional[Sequence[int]] = None) -> int:
    """Index of rho* = argmin_r mean(best_val[r, C]) (all members if C is None; first on ties).

    Args:
      best_val: [R, M] best validation task loss per rho and member.
      cluster_idxs: the best cluster C from the rho=0 clustering, or None.
    """
    best_val = np.asarray(best_val)
    cols = np.arange(best_val.shape[-1]) if cluster_idxs is None else np.asarray(cluster_idxs)
    return int(np.argmin(best_val[:, cols].mean(axis=1)))


class ScheduleResult(NamedTuple):
    """Everything of a rho schedule over S seeds (R = len(rhos), rho=0 first).

    result: RunResult with leaves [S, R, M, ...] / best_val [S, R, M] / curves [S, R, E, M].
    weights: np [S, M] divergence weights used for rho > 0.
    clusters: list of S index arrays (the best cluster, or None).
    rho_star_index: np int [S]; rho_star: np float [S].
    """
    result: RunResult
    weights: np.ndarray
    clusters: list
    rho_star_index: np.ndarray
    rho_star: np.ndarray


def run_schedule(program: Program, step: CohortStep, params0, data, rhos: Sequence[float], *,
                 keys, weight_fn: Callable, warm_start: bool = False) -> ScheduleResult:
    """rho=0 stage (one program over seeds) -> host weights -> every rho > 0 (one program).

    Args:
      program, step: from `make_program`, `mutual.make_cohort_step`.
      params0: initial cohort params, leaves [S, M, ...]; every rho starts from them (as the
        reference resets to the same initial weights and Adam state per rho).
      data: as `Program`, every leaf with a leading S axis.
      rhos: host list, rhos[0] must be 0 (the independent cohort the weights come from).
      keys: PRNG keys [S]; the run of rho index r uses fold_in(keys[s], r).
      weight_fn: np best_val0 [M] -> (w [M], cluster_idxs or None), e.g.
        `functools.partial(weights.clustering_weights, seed=seed)` adapted by the caller.
      warm_start: bug B1: the first positive rho starts from the rho=0 best params AND best Adam
        state of each member instead of params0 (default off, as the issue asks).
    """
    rhos = [float(r) for r in rhos]
    if not rhos or rhos[0] != 0.0 or any(r <= 0 for r in rhos[1:]):
        raise ValueError(f"rhos must start with 0 followed by positive values, got {rhos}.")
    n_seeds = jax.tree.leaves(params0)[0].shape[0]
    n_members = jax.tree.leaves(params0)[0].shape[1]
    opt0 = jax.vmap(step.init_opt)(params0)
    add_r = lambda t, r: jax.tree.map(lambda a: jnp.repeat(a[:, None], r, axis=1), t)
    fold = jax.vmap(lambda k, r: jax.random.fold_in(k, r), in_axes=(0, None))
    seeds_fn = jax.jit(program.run_seeds)

    ones = jnp.ones((n_seeds, 1, n_members), jnp.float32)
    res0 = seeds_fn(add_r(params0, 1), add_r(opt0, 1), data, jnp.zeros((1,)), ones,
                    fold(keys, 0)[:, None])
    best0 = np.asarray(res0.best_val[:, 0])
    w_list, clusters = zip(*(weight_fn(best0[s]) for s in range(n_seeds)))
    weights = np.stack([np.asarray(w, np.float32) for w in w_list])
    result = res0
    if len(rhos) > 1:
        r_pos = len(rhos) - 1
        p_init, o_init = add_r(params0, r_pos), add_r(opt0, r_pos)
        if warm_start:
            put = lambda a, b: a.at[:, 0].set(b[:, 0])
            p_init = jax.tree.map(put, p_init, res0.best_params)
            o_init = jax.tree.map(put, o_init, res0.best_opt_state)
        k_pos = jnp.stack([fold(keys, r) for r in range(1, len(rhos))], axis=1)
        w_pos = jnp.repeat(jnp.asarray(weights)[:, None], r_pos, axis=1)
        res_pos = seeds_fn(p_init, o_init, data, jnp.asarray(rhos[1:], jnp.float32), w_pos, k_pos)
        result = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), res0, res_pos)
    best_val = np.asarray(result.best_val)
    idx = np.array([choose_rho(best_val[s], clusters[s]) for s in range(n_seeds)])
    return ScheduleResult(result, weights, list(clusters), idx, np.asarray(rhos)[idx])
