"""Adaptive mutual learning of a stacked cohort: task losses, the [M, M] divergence, one step.

Reference (spec 2.1): member i minimises
    L_i = task(f_i, y) + rho * sum_{j != i} w_j D(f_i, sg(f_j)) / sum_k w_k
with its own Adam, all f computed before any update in the batch. Since f_i depends only on
theta_i, this is exactly one simultaneous step on L = sum_i L_i with an elementwise Adam over the
stacked params. rho (scalar) and w [M] are array arguments: one compile serves every value.
"""
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metafusion_jax.data.multiview.container import TASKS, check_task  # noqa: F401


def _masked_mean(values: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Mean of values [..., B] over the valid rows (mask [B] 0/1)."""
    return jnp.einsum("...b,b->...", values, mask) / jnp.maximum(jnp.sum(mask), 1.0)


def check_labels(y, num_classes: int, where: str = "task_loss") -> None:
    """Raises ValueError unless concrete labels y are integers in [0, C); traced y is trusted.

    Inside `jit` / `grad` / `scan` the labels are tracers whose values are unknown at trace
    time: they are trusted there (an out-of-range label would give a NaN or a wrong finite
    loss), so validate labels at the data boundary (`MultiModalData`) or call this first.
    """
    if isinstance(y, jax.core.Tracer):
        return
    y = np.asarray(y)
    if not y.size:
        return
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))
    if not integral or y.min() < 0 or y.max() >= num_classes:
        got = (f"range [{y.min()}, {y.max()}] of dtype {y.dtype}"
               if np.issubdtype(y.dtype, np.number) else f"dtype {y.dtype}")
        raise ValueError(f"{where}: classification labels y must be integer class indices in "
                         f"[0, {num_classes}) (C = f.shape[-1] outputs), got {got}; remap the "
                         f"labels to 0..{num_classes - 1} or give the model more outputs.")


def task_loss(f: jnp.ndarray, y: jnp.ndarray, mask: Optional[jnp.ndarray],
              task: str) -> jnp.ndarray:
    """The task loss of the package: MSE (mean over rows and outputs) or CE (mean over rows).

    One prediction, one definition: cohort members (training and validation), the encoder
    pre-training and the stacking meta-learner all use it.

    Args:
      f: [B, C] outputs (logits for classification).
      y: float [B] or [B, C] targets (regression), int [B] labels in [0, C) (classification;
        every row, masked or not). Concrete labels are checked; traced ones (inside jit) are
        trusted, see `check_labels`.
      mask: float32 [B], 1 on the valid rows of a padded batch; None: every row counts (a plain
        mean over the B rows).
      task: "regression" or "classification".

    Raises:
      ValueError: an unknown task; concrete classification labels outside [0, C).
    """
    check_task(task)
    if task == "classification":
        check_labels(y, f.shape[-1])
    if task == "regression":
        per_row = jnp.mean((f - y.reshape(f.shape[0], -1)) ** 2, axis=-1)
    else:
        logp = jax.nn.log_softmax(f, axis=-1)
        per_row = -jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return jnp.mean(per_row) if mask is None else _masked_mean(per_row, mask)


def divergence_matrix(F: jnp.ndarray, mask: jnp.ndarray, task: str) -> jnp.ndarray:
    """D [M, M]: D_ij = divergence of member i from the stop-gradient peer j.

    Regression: mean_b ||F_i - sg(F_j)||^2 / C. Classification: KL(p_j || p_i) batchmean,
    sum_c p_j (log p_j - log p_i) averaged over valid rows, p_j from sg(F_j) (B15).

    Args:
      F: [M, B, C] member outputs.
      mask: float32 [B].
      task: "regression" or "classification".

    Raises:
      ValueError: an unknown task.
    """
    check_task(task)
    Fd = jax.lax.stop_gradient(F)
    if task == "regression":
        per_row = jnp.mean((F[:, None] - Fd[None, :]) ** 2, axis=-1)           # [M, M, B]
        return _masked_mean(per_row, mask)
    logp = jax.nn.log_softmax(F, axis=-1)
    logpd = jax.lax.stop_gradient(logp)
    pd = jnp.exp(logpd)
    neg_entropy = jnp.sum(pd * logpd, axis=-1)                                 # [M(j), B]
    cross = jnp.einsum("jbc,ibc->ijb", pd, logp)                               # [M, M, B]
    return _masked_mean(neg_entropy[None, :, :] - cross, mask)


def weight_matrix(w: jnp.ndarray) -> jnp.ndarray:
    """Wmat [M, M] = w[None, :] * (1 - eye(M)) / sum(w) (the denominator includes w_i, spec 2.1)."""
    m = w.shape[0]
    return w[None, :] * (1.0 - jnp.eye(m, dtype=w.dtype)) / jnp.sum(w)


def joint_loss(F, y, mask, rho, w, task: str):
    """L = sum_i [task_i + rho * sum_j Wmat_ij D_ij].

    Args:
      F: [M, B, C]; y: targets [B] ([B, C]); mask: float32 [B]; rho: scalar array; w: float32 [M].

    Returns:
      (L scalar, {"task": [M], "divergence": [M] = sum_j Wmat_ij D_ij}).

    Raises:
      ValueError: an unknown task; concrete classification labels outside [0, C) (traced
        labels, inside jit, are trusted: see `check_labels`).
    """
    check_task(task)
    if task == "classification":
        check_labels(y, F.shape[-1], "joint_loss")
    tasks = jax.vmap(lambda f: task_loss(f, y, mask, task))(F)
    div = jnp.sum(weight_matrix(w) * divergence_matrix(F, mask, task), axis=1)
    return jnp.sum(tasks + rho * div), {"task": tasks, "divergence": div}


class CohortStep(NamedTuple):
    """Un-jitted functions of cohort mutual learning (the caller jits / vmaps them).

    init_opt(params) -> opt_state: M independent Adams, every leaf [M, ...] (count [M] too).
    loss(params, xs, y, mask, rho, w) -> (L, aux) with aux {"task": [M], "divergence": [M]}.
    step(params, opt_state, xs, y, mask, rho, w) -> (params, opt_state, aux).
    val_task(params, xs, y) -> [M] task loss of every member on one full batch (no mask).
    """
    init_opt: Callable
    loss: Callable
    step: Callable
    val_task: Callable


def make_step_from_loss(loss: Callable, val_task: Callable, *,
                        learning_rate: float = 1e-3) -> CohortStep:
    """A `CohortStep` for any stacked joint loss: one gradient of the summed loss + M Adams.

    Args:
      loss: (params, xs, y, mask, rho, w) -> (scalar L, aux), L a sum of per-member losses
        whose member i term depends only on member i's params (peers under stop_gradient).
      val_task: (params, xs, y) -> [M] per-member validation task loss.
      learning_rate: Adam lr.
    """
    tx = optax.adam(learning_rate)

    def step(params, opt_state, xs, y, mask, rho, w):
        grads, aux = jax.grad(loss, has_aux=True)(params, xs, y, mask, rho, w)
        updates, opt_state = jax.vmap(tx.update)(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, aux

    # vmapped Adam: every state leaf (the step count too) leads with M, so per-member best
    # optimizer states can be kept and restored (B1); numerically identical to one adam.
    return CohortStep(jax.vmap(tx.init), loss, step, val_task)


def make_cohort_step(apply: Callable, *, task: str, learning_rate: float = 1e-3) -> CohortStep:
    """Mutual-learning step over a stacked cohort.

    Args:
      apply: `cohort.Cohort.apply`, (params, xs) -> F [M, B, C].
      task: "regression" or "classification".
      learning_rate: Adam lr (reference 1e-3, no weight decay, no schedule).
    """
    check_task(task)

    def loss(params, xs, y, mask, rho, w):
        return joint_loss(apply(params, xs), y, mask, rho, w, task)

    def val_task(params, xs, y):
        F = apply(params, xs)
        ones = jnp.ones((F.shape[1],), jnp.float32)
        return jax.vmap(lambda f: task_loss(f, y, ones, task))(F)

    return make_step_from_loss(loss, val_task, learning_rate=learning_rate)
