"""Divergence weights w [M] from the rho=0 cohort's best validation losses (host, numpy/sklearn).

clustering (spec 2.2, the reference default): 1-D KMeans on the M losses, k chosen by silhouette
over k in {2, ..., min(10, M)} - {M} with sklearn `KMeans(random_state=seed)` defaults; the best
cluster C has the lowest mean loss; w_j = 1/|C| on C, 0 elsewhere. adversarial: the worst cluster
(highest mean loss). uniform: w = 1 (L_i = task + rho/M sum_{j != i} D).
"""
import warnings
from typing import NamedTuple, Optional

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score


class ClusterWeights(NamedTuple):
    """w: float32 [M]; cluster_idxs: int [|C|] chosen cluster (sorted); k: clusters used;
    labels: int [M] cluster of each member."""
    w: np.ndarray
    cluster_idxs: np.ndarray
    k: int
    labels: np.ndarray


def _check_losses(losses) -> np.ndarray:
    losses = np.asarray(losses, np.float64)
    if losses.ndim != 1 or losses.size == 0 or not np.all(np.isfinite(losses)):
        raise ValueError(f"losses must be a finite 1-D array [M] of best validation losses, got "
                         f"shape {losses.shape} with values {losses}; check the rho=0 run.")
    return losses


def _kmeans(losses: np.ndarray, k: int, seed: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate losses, fewer clusters
        return KMeans(n_clusters=k, random_state=seed).fit_predict(losses.reshape(-1, 1))


def choose_k(losses, *, seed: int, max_k: int = 10) -> int:
    """k with the highest silhouette over {2..min(max_k, M)} - {M} (first on ties).

    Candidates whose labels collapse to < 2 distinct clusters or to M singletons (silhouette
    undefined) are skipped. Returns 1 (a single cluster) when no k is valid, e.g. M <= 2.
    """
    losses = _check_losses(losses)
    m = losses.size
    best_k, best_score = 1, -np.inf
    for k in range(2, min(max_k, m) + 1):
        if k == m:
            continue
        labels = _kmeans(losses, k, seed)
        n_labels = len(np.unique(labels))
        if n_labels < 2 or n_labels >= m:
            continue
        score = silhouette_score(losses.reshape(-1, 1), labels)
        if score > best_score:
            best_k, best_score = k, score
    return best_k


def clustering_weights(losses, *, seed: int, optimal_k: Optional[int] = None,
                       adversarial: bool = False) -> ClusterWeights:
    """Weights that let every member learn only from the best (or, adversarial, worst) cluster.

    Args:
      losses: [M] best validation task losses of the rho=0 cohort.
      seed: KMeans random_state (the reference uses the run seed).
      optimal_k: use this k instead of the silhouette choice (the config's `optimal_k`).
      adversarial: learn from the cluster with the HIGHEST mean loss (negative learning).

    Returns:
      ClusterWeights with w_j = 1/|C| for j in C, else 0 (sum w = 1).
    """
    losses = _check_losses(losses)
    m = losses.size
    if optimal_k is not None and not 1 <= int(optimal_k) <= m:
        raise ValueError(f"optimal_k must be in [1, M={m}] (the number of losses), got "
                         f"{optimal_k}; pass optimal_k=None (config.optimal_k = 0) to choose k "
                         "by silhouette.")
    k = int(optimal_k) if optimal_k is not None else choose_k(losses, seed=seed)
    labels = np.zeros(m, np.int64) if k == 1 else _kmeans(losses, k, seed)
    present = np.unique(labels)
    means = np.array([losses[labels == lab].mean() for lab in present])
    chosen = present[np.argmax(means) if adversarial else np.argmin(means)]
    idxs = np.flatnonzero(labels == chosen)
    w = np.zeros(m, np.float32)
    w[idxs] = 1.0 / idxs.size
    return ClusterWeights(w, idxs, k, labels)


def adversarial_weights(losses, *, seed: int, optimal_k: Optional[int] = None) -> ClusterWeights:
    """Negative learning (spec 2.2): every member learns from the WORST cluster.

    `clustering_weights(losses, seed=seed, optimal_k=optimal_k, adversarial=True)`.
    """
    return clustering_weights(losses, seed=seed, optimal_k=optimal_k, adversarial=True)


def uniform_weights(num_members: int) -> np.ndarray:
    """float32 [M] of ones (the reference's fallback for any other weight type)."""
    if num_members < 1:
        raise ValueError(f"num_members must be >= 1, got {num_members}.")
    return np.ones(num_members, np.float32)
