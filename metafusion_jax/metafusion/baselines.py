"""Baselines of Meta Fusion (spec 4): unimodal, early and late fusion, cooperative learning.

All baselines are cohorts of mf-core (`cohort.make_cohort` with the identity
extractor) over the "benchmark" members, in this order:

    member 0: early fusion (p_1, ..., p_K)           all raw inputs concatenated
    member k: unimodal k   (0, .., p_k, .., 0)       k = 1..K

For K = 2 this is exactly `make_cohort_spec([[p1, 0], [p2, 0]])` (the reference
builds its benchmarks the same way). Unimodal and early fusion are trained
independently (rho = 0, `mutual.make_cohort_step` + `program.make_program`);
late fusion = simple average of the K unimodal outputs.

Cooperative learning (Coop, after Ding et al. 2022; reference `Coop`, 2 modalities,
regression), per batch with f_e, f_1, f_2 the three outputs and sg = stop_gradient:

    L_e = MSE(y, f_e + sg(f_1) + sg(f_2)) + rho / (1 - rho) * MSE(f_e, 0)
    L_1 = MSE(y, f_1 + sg(f_2) [+ sg(f_e)]) + rho * MSE(f_1, sg(f_2))
    L_2 = MSE(y, f_2 + sg(f_1) [+ sg(f_e)]) + rho * MSE(f_2, sg(f_1))

The bracketed f_e is left out when `reproduce_b17=True` (the reference's bug B17:
the early network's index 0 is treated as "no early model"). Prediction =
f_e + f_1 + f_2. rho in [0, 1) (the reference filters its rho list to [0, 0.99]).
The validation "task" of member i (best-epoch checkpointing, choice of rho) is its
partial-residual MSE without the penalty (our reading of the reference Trainer,
which checkpoints on the task loss).
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.metafusion import cohort as cohort_lib
from metafusion_jax.metafusion.extractors import make_identity_extractor
from metafusion_jax.metafusion.mutual import CohortStep
from metafusion_jax.metafusion.mutual import make_step_from_loss


def benchmark_spec(modality_dims: Sequence[int]) -> cohort_lib.CohortSpec:
    """CohortSpec of the K + 1 benchmark members: early fusion, then unimodal 1..K."""
    dims = tuple(int(p) for p in modality_dims)
    if not dims or any(p < 1 for p in dims):
        raise ValueError(f"modality_dims must be K >= 1 positive widths, got {modality_dims}.")
    k = len(dims)
    members = [dims] + [tuple(p if j == m else 0 for j, p in enumerate(dims)) for m in range(k)]
    if k == 1:
        members = [dims]
    modes = tuple(tuple(cohort_lib.FULL if d else cohort_lib.DROP for d in c) for c in members)
    return cohort_lib.CohortSpec(dims, tuple((p, 0) for p in dims), tuple(members), modes, dims)


def make_benchmark_cohort(modality_dims, *, hidden, out_dim) -> cohort_lib.Cohort:
    """Stacked early-fusion + unimodal networks MLP(input, hidden, C) (identity extractor)."""
    spec = benchmark_spec(modality_dims)
    return cohort_lib.make_cohort(spec, make_identity_extractor(spec), hidden=hidden, out_dim=out_dim)


def benchmark_predictions(F) -> dict:
    """Named baseline predictions from benchmark outputs F [K + 1, N, C].

    Returns:
        {"early_fusion": [N, C], "modality_1".."modality_K": [N, C],
         "late_fusion": [N, C] (mean of the unimodal outputs; logits for classification)}.
    """
    F = jnp.asarray(F)
    out = {"early_fusion": F[0]}
    if F.shape[0] == 1:  # One modality: unimodal == early, late == early.
        return {"early_fusion": F[0], "modality_1": F[0], "late_fusion": F[0]}
    out.update({f"modality_{k}": F[k] for k in range(1, F.shape[0])})
    out["late_fusion"] = jnp.mean(F[1:], axis=0)
    return out


def coop_losses(F, y, mask, rho, *, reproduce_b17=True):
    """Per-member Coop losses for benchmark outputs F [3, B, 1] (early, mod1, mod2).

    Args:
        F: [3, B, 1] outputs; y: [B] targets; mask: float32 [B] valid rows; rho: scalar in [0, 1).
        reproduce_b17: leave f_early out of the unimodal residuals (reference behaviour).

    Returns:
        (task [3] partial-residual MSEs, penalty [3] = rho-weighted agreement terms).
    """
    f = F[:, :, 0]
    sg = jax.lax.stop_gradient(f)
    e_in = 0.0 if reproduce_b17 else 1.0
    fits = jnp.stack([f[0] + sg[1] + sg[2],
                      f[1] + sg[2] + e_in * sg[0],
                      f[2] + sg[1] + e_in * sg[0]])                              # [3, B]
    denom = jnp.maximum(jnp.sum(mask), 1.0)
    task = jnp.sum((fits - y[None, :]) ** 2 * mask[None, :], axis=1) / denom
    agree = jnp.stack([f[0] ** 2, (f[1] - sg[2]) ** 2, (f[2] - sg[1]) ** 2])
    scale = jnp.stack([rho / (1.0 - rho), rho, rho])
    penalty = scale * jnp.sum(agree * mask[None, :], axis=1) / denom
    return task, penalty


def coop_predict(F):
    """Coop prediction [N, C] = f_early + f_1 + f_2 from F [3, N, C]."""
    return jnp.sum(jnp.asarray(F), axis=0)


def make_coop_step(apply: Callable, *, learning_rate: float = 1e-3,
                   reproduce_b17: bool = True) -> CohortStep:
    """Coop as a `mutual.CohortStep`, so `program.make_program` trains it (best-val per member).

    Args:
        apply: `Cohort.apply` of `make_benchmark_cohort(dims, ...)` with K = 2, out_dim 1.
        learning_rate: Adam lr (one Adam per member, as the reference).
        reproduce_b17: see `coop_losses`.

    Returns:
        CohortStep whose `w` argument is ignored (pass ones [3]) and whose aux["task"] [3]
        is the per-member partial-residual MSE.
    """
    def loss(params, xs, y, mask, rho, w):
        del w
        task, penalty = coop_losses(apply(params, xs), y, mask, rho, reproduce_b17=reproduce_b17)
        return jnp.sum(task + penalty), {"task": task, "divergence": penalty}

    def val_task(params, xs, y):
        F = apply(params, xs)
        ones = jnp.ones((F.shape[1],), jnp.float32)
        return coop_losses(F, y, ones, 0.0, reproduce_b17=reproduce_b17)[0]

    return make_step_from_loss(loss, val_task, learning_rate=learning_rate)


def coop_rhos(rho_list) -> list:
    """The reference's filter of the rho list to [0, 1): [0, 0.99, 3] -> [0, 0.99]."""
    rhos = [float(r) for r in rho_list if 0.0 <= float(r) < 1.0]
    if not rhos:
        raise ValueError(f"Coop needs some rho in [0, 1); rho_list {list(rho_list)} has none.")
    return rhos


def choose_coop_rho(best_val) -> int:
    """Index of the rho with the lowest mean best-val loss over the 3 members: best_val [R, 3]."""
    return int(np.argmin(np.asarray(best_val).mean(axis=1)))
