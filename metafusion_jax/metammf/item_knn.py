"""Item-item k-nearest-neighbour graphs for LATTICE and FREEDOM, kept sparse as [I, k] rows.

A graph over I items with k kept entries per row is (idx int32 [I, k], w float32 [I, k]): row i
holds w[i, n] at column idx[i, n]. The shared operators of the baselines spec
(../shared/specs/baselines.md):

- `cosine_topk(x, k)`: topk(cos(X)): each row of the cosine-similarity matrix X̄ X̄ᵀ (X̄ = rows
  divided by their L2 norm, zero rows left at zero) keeps its k largest values; the diagonal
  (cos = 1) is normally among them. Values keep their sign (no clamping at 0) and their gradient
  flows to x; the indices carry none. Ties go to the lower item index (`jax.lax.top_k`).
- `rnorm(vals, idx)`: D^-1/2 S D^-1/2 with D = diag(row sums of S), applied on both sides even
  though S is not symmetric; a row sum <= 0 gives 0 (the code's inf -> 0). `vals` may stack K
  graphs [K, I, k] whose sum is normalised once (LATTICE's learned graph).
- `propagate(idx, w, x)`: S x for one sparse graph: [I, H] -> [I, H].

`host_topk` builds the graphs of raw features once on the host, in row chunks ([chunk, I]
memory), for the trainer's `prepare_inputs`.
"""
import jax
import jax.numpy as jnp
import numpy as np


def unit_rows(x):
    """Rows divided by their L2 norm; zero rows stay zero (the code divides by 0): [n, D]."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_topk(query, keys, k):
    """topk(cos) rows: the k largest cosine similarities of each `query` row among `keys` rows.

    Args:
        query: float32 [n, D].
        keys: float32 [I, D].
        k: kept entries per row, 1 <= k <= I (static).

    Returns:
        (vals float32 [n, k], idx int32 [n, k]), values in descending order.
    """
    vals, idx = jax.lax.top_k(unit_rows(query) @ unit_rows(keys).T, k)
    return vals, idx.astype(jnp.int32)


def rnorm(vals, idx):
    """D^-1/2 S D^-1/2 of a sparse S (or of the sum of K stacked ones), per kept entry.

    Args:
        vals: float32 [I, k] or [K, I, k] (summed over K for the row sums).
        idx: int32 of the same shape: the column of each entry.

    Returns:
        float32 like vals: vals[.., i, n] / sqrt(r_i r_idx[i, n]), r = row sums (0 where r <= 0).
    """
    row_sum = vals.sum(axis=-1)
    if vals.ndim == 3:
        row_sum = row_sum.sum(axis=0)
    inv_sqrt = jnp.where(row_sum > 0, jax.lax.rsqrt(jnp.maximum(row_sum, 1e-30)), 0.0)
    row_scale = inv_sqrt[:, None] if vals.ndim == 2 else inv_sqrt[None, :, None]
    return vals * row_scale * inv_sqrt[idx]


def propagate(idx, w, x):
    """S x for a sparse S (idx, w [I, k]): [I, H] -> [I, H]."""
    return jnp.einsum("ik,ikh->ih", w, x[idx])


def check_k(k, n_items, where):
    """min(k, I) after checking k >= 1; raises ValueError naming `where`."""
    if int(k) < 1:
        raise ValueError(f"{where}: knn_k must be >= 1 neighbours per item, got {k}. Use e.g. "
                         "10 (the papers' default).")
    return min(int(k), int(n_items))


def host_topk(features, modality_slices, k, chunk=1024):
    """`cosine_topk` of every modality's raw features, on the host, in row chunks.

    Args:
        features: float [I, F] concatenated features.
        modality_slices: ((name, start, stop), ...) column blocks, one per modality.
        k: kept entries per row (<= I).
        chunk: rows per similarity block (memory [chunk, I]).

    Returns:
        (vals float32 [K, I, k], idx int32 [K, I, k]) numpy arrays.
    """
    features = jnp.asarray(features, jnp.float32)
    rows = jax.jit(cosine_topk, static_argnums=2)
    vals_all, idx_all = [], []
    for _, start, stop in modality_slices:
        block = features[:, start:stop]
        parts = [rows(block[a:a + chunk], block, k) for a in range(0, block.shape[0], chunk)]
        vals_all.append(np.concatenate([np.asarray(p[0]) for p in parts]))
        idx_all.append(np.concatenate([np.asarray(p[1]) for p in parts]))
    return np.stack(vals_all).astype(np.float32), np.stack(idx_all).astype(np.int32)


def traced_topk(features, modality_slices, k):
    """`host_topk` inside jit (no chunks, [I, I] per modality), without gradient: the fallback
    when the caller did not pass the `prepare_inputs` arrays."""
    feat = jax.lax.stop_gradient(features)
    parts = [cosine_topk(feat[:, a:b], feat[:, a:b], k) for _, a, b in modality_slices]
    return jnp.stack([p[0] for p in parts]), jnp.stack([p[1] for p in parts])
