"""Post-hoc ensembles over cohort member outputs (spec 2.5): pure functions.

Inputs are member predictions P [M, N, C] (C = 1 for regression, C logits for
classification), member validation losses [M] (the best-checkpoint task loss),
and targets y [N] (float regression, int classification).

* `best_single`, `simple_average`, `weighted_average` (w ~ 1/val_loss).
* `greedy_selection` (Caruana ensemble selection; the paper's "Meta Fusion"),
  a small host loop, and `greedy_predict`.
* `fit_stacking` / `stacking_predict`: MLP(M*C -> M*C -> C), Adam lr 0.1, on the
  detached member outputs of the train set, best-val-epoch checkpoint (B11).
* Classification: `majority_voting`, `weighted_voting`.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metafusion_jax.metafusion.cohort import torch_linear_init
from metafusion_jax.metafusion.mutual import check_task, task_loss


def _check(preds, task):
    check_task(task)
    if np.ndim(preds) != 3:
        raise ValueError(f"member predictions must be [M, N, C], got shape {np.shape(preds)}.")


def inverse_loss_weights(val_losses, subset=None):
    """w_i ~ 1 / val_loss_i, normalised to sum 1 (over `subset` indices if given; 0 elsewhere)."""
    inv = 1.0 / jnp.asarray(val_losses, jnp.float32)
    if subset is not None:
        inv = jnp.zeros_like(inv).at[jnp.asarray(subset)].set(inv[jnp.asarray(subset)])
    return inv / jnp.sum(inv)


def best_single(preds, val_losses):
    """Prediction [N, C] of the member with the lowest validation loss (first on ties)."""
    return jnp.asarray(preds)[jnp.argmin(jnp.asarray(val_losses))]


def simple_average(preds):
    """Mean of member outputs [N, C] (logits for classification)."""
    return jnp.mean(jnp.asarray(preds), axis=0)


def weighted_average(preds, weights):
    """sum_i w_i P_i [N, C] for weights [M] (e.g. `inverse_loss_weights`)."""
    return jnp.einsum("m,mnc->nc", jnp.asarray(weights, jnp.float32), jnp.asarray(preds))


class Selection(NamedTuple):
    """Greedy ensemble: member indices (selection order) and their weights (sum 1)."""
    indices: np.ndarray
    weights: np.ndarray
    val_loss: float


def greedy_selection(val_preds, y_val, val_losses, *, task, init_size=3, max_size=30,
                     keep_fraction=0.8) -> Selection:
    """Caruana ensemble selection exactly as the reference (spec 2.5).

    1. Rank members by val loss; keep the best floor(keep_fraction * M) (at least 1).
    2. Start with the `init_size` best (fewer if fewer are kept).
    3. Repeatedly add, without replacement, the kept candidate that most lowers the
       val loss of the weighted average, weights ~ 1/val_loss renormalised over the
       chosen set; stop when no candidate strictly lowers it or the size reaches
       min(max_size, kept). Ties between candidates go to the better-ranked member.

    Args:
        val_preds: [M, N, C] member outputs on the validation set.
        y_val: [N] targets.
        val_losses: [M] member validation losses (also the averaging weights).
        task: "regression" or "classification".

    Returns:
        `Selection` (host numpy).
    """
    _check(val_preds, task)
    preds = np.asarray(val_preds, np.float64)
    losses = np.asarray(val_losses, np.float64)
    if losses.shape != (preds.shape[0],):
        raise ValueError(f"val_losses must be [M={preds.shape[0]}], got shape {losses.shape}.")
    order = np.argsort(losses, kind="stable")
    kept = order[:max(1, int(np.floor(keep_fraction * len(losses))))]
    limit = min(max_size, len(kept))
    chosen = list(kept[:min(init_size, len(kept))])

    y = np.asarray(y_val)

    # `mutual.task_loss` in float64 numpy: a host loop of O(M^2) small evaluations, kept in
    # float64 so near-ties between candidates compare exactly as before.
    def ens_loss(idx):
        w = (1.0 / losses[idx]) / np.sum(1.0 / losses[idx])
        avg = np.einsum("m,mnc->nc", w, preds[idx])
        if task == "regression":
            return float(np.mean((avg - y.reshape(len(y), -1)) ** 2))
        top = avg.max(axis=-1)
        lse = top + np.log(np.sum(np.exp(avg - top[:, None]), axis=-1))
        return float(np.mean(lse - avg[np.arange(len(y)), y.astype(np.int64)]))

    current = ens_loss(chosen)
    while len(chosen) < limit:
        candidates = [c for c in kept if c not in chosen]
        scores = [ens_loss(chosen + [c]) for c in candidates]
        best = int(np.argmin(scores))
        if not scores[best] < current:
            break
        chosen.append(candidates[best])
        current = scores[best]
    idx = np.asarray(chosen, np.int64)
    return Selection(idx, (1.0 / losses[idx]) / np.sum(1.0 / losses[idx]), current)


def greedy_predict(preds, selection: Selection):
    """Weighted average [N, C] of the selected members' outputs (e.g. on test)."""
    return weighted_average(jnp.asarray(preds)[jnp.asarray(selection.indices)], selection.weights)


def majority_voting(preds):
    """Mode of the members' argmax classes: int [N]; ties go to the smallest class index."""
    preds = jnp.asarray(preds)
    votes = jax.nn.one_hot(jnp.argmax(preds, axis=-1), preds.shape[-1]).sum(axis=0)
    return jnp.argmax(votes, axis=-1).astype(jnp.int32)


def weighted_voting(preds, weights):
    """Argmax of the members' class votes weighted by `weights` [M]: int [N]; ties -> smallest class."""
    preds = jnp.asarray(preds)
    onehot = jax.nn.one_hot(jnp.argmax(preds, axis=-1), preds.shape[-1])
    return jnp.argmax(jnp.einsum("m,mnc->nc", jnp.asarray(weights, jnp.float32), onehot),
                      axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------- stacking


def _stack_inputs(preds):
    """[M, N, C] -> [N, M*C]: per sample the concatenation f_1 | f_2 | ... | f_M."""
    m, n, c = preds.shape
    return jnp.transpose(preds, (1, 0, 2)).reshape(n, m * c)


def stacking_init(key, num_members, out_dim):
    """Meta-learner params: MLP(M*C -> M*C -> C), PyTorch-default init (`cohort.torch_linear_init`)."""
    width = num_members * out_dim
    k1, k2 = jax.random.split(key)
    return [torch_linear_init(k1, width, (width, width), (width,)),
            torch_linear_init(k2, width, (width, out_dim), (out_dim,))]


def _meta_apply(params, x):
    """x [N, M*C] -> Linear -> ReLU -> Linear -> [N, C]."""
    h = jax.nn.relu(x @ params[0]["w"] + params[0]["b"][None, :])
    return h @ params[1]["w"] + params[1]["b"][None, :]


def stacking_predict(params, preds):
    """Meta-learner output [N, C] from member outputs [M, N, C]."""
    return _meta_apply(params, _stack_inputs(jnp.asarray(preds, jnp.float32)))


class StackingResult(NamedTuple):
    """best_params: the best-val-epoch meta-learner; best_val: its val loss; val_curve [E]."""
    best_params: list
    best_val: jnp.ndarray
    val_curve: jnp.ndarray


def make_stacking_fit(*, task, n_train, epochs, batch_size=64, learning_rate=0.1) -> Callable:
    """Un-jitted fit(params, train_preds [M,N,C], y_train, val_preds [M,N_v,C], y_val, key).

    Adam(lr) over shuffled minibatches of the (detached) member outputs on the train
    set, every epoch evaluated on the full val set; the strict-best epoch is kept.
    A partial last batch is masked so it averages over its valid rows (PyTorch's
    smaller last batch). Returns `StackingResult`.
    """
    check_task(task)
    tx = optax.adam(learning_rate)
    nb = -(-n_train // batch_size)

    def batch_loss(params, xb, yb, mask):
        return task_loss(_meta_apply(params, xb), yb, mask, task)

    def fit(params, train_preds, y_train, val_preds, y_val, key):
        x = _stack_inputs(jax.lax.stop_gradient(jnp.asarray(train_preds, jnp.float32)))
        x_val = _stack_inputs(jnp.asarray(val_preds, jnp.float32))

        def step(carry, inp):
            p, o = carry
            idx, mask = inp
            grads = jax.grad(batch_loss)(p, x[idx], y_train[idx], mask)
            updates, o = tx.update(grads, o, p)
            return (optax.apply_updates(p, updates), o), None

        def epoch(carry, e):
            p, o, best_p, best_v = carry
            perm = jax.random.permutation(jax.random.fold_in(key, e), n_train)
            perm = jnp.pad(perm, (0, nb * batch_size - n_train)).reshape(nb, batch_size)
            mask = (jnp.arange(nb * batch_size) < n_train).astype(jnp.float32).reshape(nb, batch_size)
            (p, o), _ = jax.lax.scan(step, (p, o), (perm, mask))
            val = task_loss(_meta_apply(p, x_val), y_val, None, task)
            better = val < best_v
            best_p = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, best_p)
            return (p, o, best_p, jnp.where(better, val, best_v)), val

        init = (params, tx.init(params), params, jnp.asarray(jnp.inf, jnp.float32))
        (_, _, best_p, best_v), curve = jax.lax.scan(epoch, init, jnp.arange(epochs))
        return StackingResult(best_p, best_v, curve)

    return fit


def fit_stacking(key, train_preds, y_train, val_preds, y_val, *, task, epochs, batch_size=64,
                 learning_rate=0.1) -> StackingResult:
    """Initialises and trains the stacking meta-learner in one jit call (see `make_stacking_fit`).

    Args:
        key: PRNG key (init and shuffling).
        train_preds: [M, N, C] member outputs on the train set; y_train [N].
        val_preds: [M, N_v, C]; y_val [N_v].
        task: "regression" or "classification".
        epochs: E (reference 10 synthetic, 15 real).
    """
    _check(train_preds, task)
    m, n, c = np.shape(train_preds)
    k_init, k_fit = jax.random.split(key)
    fit = make_stacking_fit(task=task, n_train=n, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate)
    params = stacking_init(k_init, m, c)
    return jax.jit(fit)(params, train_preds, jnp.asarray(y_train), val_preds, jnp.asarray(y_val), k_fit)
