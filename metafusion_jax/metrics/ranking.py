"""Full-ranking top-K evaluation for implicit-feedback recommenders.

Every user is scored against every item by a dot product; the user's train items (and any extra
`exclude_pairs`, e.g. val pairs when testing) are removed from the candidates; `lax.top_k` picks the
top max(ks) items and the metrics are computed from the hits. Users are processed in chunks of a
constant shape (the last chunk is padded), so peak memory is chunk_size x I scores and there is one
compile per (chunk_size, I, H, max(ks)) and padded pair count.

Metric definitions (rank j = 0, 1, ... in the top list; rel_u = the user's eval items;
hit_j = 1 if the item at rank j is in rel_u; hits@K = sum_{j<K} hit_j):
    precision@K = hits@K / K
    recall@K    = hits@K / |rel_u|
    ndcg@K      = DCG@K / IDCG@K, DCG@K = sum_{j<K} hit_j / log2(j + 2) (binary gains),
                  IDCG@K = sum_{j < min(|rel_u|, K)} 1 / log2(j + 2)
    map@K       = sum_{j<K} P@(j+1) * hit_j / min(|rel_u|, K)
    hr@K        = sum_u hits@K / sum_u |rel_u|  (micro-averaged recall, as the MetaMMF code defines
                  "HR"; not "fraction of users with at least one hit")
precision, recall, ndcg and map are averaged over the users with at least one eval item; other
users are skipped. hr sums over the same users.

Conventions:
    * Duplicate eval pairs are counted once.
    * An eval pair that is also a train (or exclude) pair stays in rel_u but its item is masked, so
      it can never be hit: it lowers recall, ndcg, map and hr, exactly as a full-ranking protocol
      that drops train items from the candidates would. Pass disjoint splits to avoid this.
    * Ties in score are broken towards the lower item id (`lax.top_k` semantics).
    * If a user has fewer than K unmasked candidates, the masked items that fill the top list are
      never hits.
"""
import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.data.rec import interactions

_METRICS = ("precision", "recall", "ndcg", "map")
_PAD_MULTIPLE = 1024  # Padded pair counts are rounded up so similar inputs reuse one compile.


def _check_embedding(x, name):
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must have shape [N, H], got shape {x.shape}. Pass one row per user/item.")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}. Cast to float32.")
    if not np.isfinite(x).all():
        raise ValueError(
            f"{name} contains {int((~np.isfinite(x)).sum())} NaN/inf values. "
            "Check the model output (diverged training?) before evaluating.")
    return x.astype(np.float32)


def _check_pairs(pairs, name, n_users, n_items):
    return interactions.check_pairs(
        pairs, name=name, n_users=n_users, n_items=n_items, allow_empty=True,
        hint="Ids index the embedding rows: use 0-based ids that match user_emb / item_emb.")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_ks(ks, n_items):
    given = ks
    ks = tuple(np.atleast_1d(np.asarray(ks, dtype=object)).tolist())
    if not ks or not all(_is_int(k) for k in ks):
        raise ValueError(
            f"ks must be a non-empty sequence of integer cut-offs, got {given!r}; a non-integer "
            "cut-off such as 2.5 has no meaning. Pass e.g. ks=(10, 20).")
    ks = tuple(int(k) for k in ks)
    if any(k < 1 or k > n_items for k in ks):
        raise ValueError(
            f"ks must be positive integers <= n_items={n_items}, got {ks}. Lower the cut-offs "
            "or evaluate on more items.")
    return ks


def _chunked_pairs(pairs, chunk_size, n_chunks):
    """Groups pairs by user chunk into padded [n_chunks, P] (row-in-chunk, item) arrays.

    Padding rows are `chunk_size` (out of range), so `.at[...].set(mode="drop")` ignores them.
    """
    chunk = pairs[:, 0] // chunk_size
    order = np.argsort(chunk, kind="stable")
    chunk, pairs = chunk[order], pairs[order]
    counts = np.bincount(chunk, minlength=n_chunks)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    width = max(_PAD_MULTIPLE, -(-int(counts.max(initial=0)) // _PAD_MULTIPLE) * _PAD_MULTIPLE)
    rows = np.full((n_chunks, width), chunk_size, np.int32)
    cols = np.zeros((n_chunks, width), np.int32)
    pos = np.arange(len(pairs)) - starts[chunk]
    rows[chunk, pos] = pairs[:, 0] - chunk * chunk_size
    cols[chunk, pos] = pairs[:, 1]
    return rows, cols


@functools.partial(jax.jit, static_argnames=("ks",))
def _chunk_metrics(user_emb, item_emb, mask_rows, mask_cols, eval_rows, eval_cols, n_rel, ks):
    """Per-user metrics for one chunk of C users.

    Args:
        user_emb: float32 [C, H].
        item_emb: float32 [I, H].
        mask_rows, mask_cols: int32 [P]; (row-in-chunk, item) pairs to mask; row C is padding.
        eval_rows, eval_cols: int32 [P']; relevant (row-in-chunk, item) pairs; row C is padding.
        n_rel: int32 [C]; number of relevant items per user.
        ks: static tuple of cut-offs.

    Returns:
        float32 [5, C, len(ks)]: hits, precision, recall, ndcg, map.
    """
    max_k = max(ks)
    scores = jnp.matmul(user_emb, item_emb.T, precision=lax.Precision.HIGHEST)  # [C, I]
    scores = scores.at[mask_rows, mask_cols].set(-jnp.inf, mode="drop")
    top_vals, top_idx = lax.top_k(scores, max_k)  # [C, max_k]
    rel = jnp.zeros(scores.shape, bool).at[eval_rows, eval_cols].set(True, mode="drop")
    hit = (jnp.take_along_axis(rel, top_idx, axis=1) & (top_vals > -jnp.inf)).astype(jnp.float32)

    ranks = jnp.arange(max_k, dtype=jnp.float32)
    disc = 1.0 / jnp.log2(ranks + 2.0)
    cum_hits = jnp.cumsum(hit, axis=1)
    cum_dcg = jnp.cumsum(hit * disc[None, :], axis=1)
    cum_ap = jnp.cumsum(cum_hits / (ranks[None, :] + 1.0) * hit, axis=1)
    cum_idcg = jnp.cumsum(disc)
    n_rel_f = n_rel.astype(jnp.float32)
    out = []
    for k in ks:
        hits = cum_hits[:, k - 1]
        n_ideal = jnp.clip(jnp.minimum(n_rel, k), 1, None)
        out.append(jnp.stack([
            hits,
            hits / k,
            hits / jnp.maximum(n_rel_f, 1.0),
            cum_dcg[:, k - 1] / cum_idcg[n_ideal - 1],
            cum_ap[:, k - 1] / n_ideal.astype(jnp.float32),
        ]))
    return jnp.stack(out, axis=-1)


def ranking_metrics(user_emb, item_emb, train_pairs, eval_pairs, ks=(10, 20), exclude_pairs=None,
                    chunk_size=1024):
    """Full-ranking top-K metrics (definitions in the module docstring).

    Args:
        user_emb: float [U, H] user embeddings (numpy or jax).
        item_emb: float [I, H] item embeddings; scores are `user_emb @ item_emb.T`.
        train_pairs: int [E, 2] 0-based (user, item) pairs removed from the candidates.
        eval_pairs: int [E', 2] 0-based relevant (user, item) pairs (val or test).
        ks: cut-offs, each in [1, I].
        exclude_pairs: optional int [E'', 2] extra pairs to remove from the candidates (e.g. val
            pairs when evaluating on test).
        chunk_size: users scored at once (C); memory is about C x I float32 scores.

    Returns:
        dict with Python float values under `precision@K`, `recall@K`, `ndcg@K`, `hr@K`, `map@K`
        for each K in ks.

    Raises:
        ValueError: on shape, dtype or id-range problems, non-finite embeddings, bad ks or
            chunk_size, or empty eval_pairs.
    """
    user_emb = _check_embedding(user_emb, "user_emb")
    item_emb = _check_embedding(item_emb, "item_emb")
    (n_users, hidden), (n_items, item_hidden) = user_emb.shape, item_emb.shape
    if hidden != item_hidden:
        raise ValueError(
            f"user_emb and item_emb must share the hidden size H, got user_emb {user_emb.shape} "
            f"and item_emb {item_emb.shape}.")
    ks = _check_ks(ks, n_items)
    if not _is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer (users scored at once), got "
                         f"{chunk_size!r}.")
    train_pairs = _check_pairs(train_pairs, "train_pairs", n_users, n_items)
    eval_pairs = _check_pairs(eval_pairs, "eval_pairs", n_users, n_items)
    if eval_pairs.shape[0] == 0:
        raise ValueError("eval_pairs is empty: there is nothing to evaluate. Pass val/test pairs.")
    mask_pairs = train_pairs
    if exclude_pairs is not None:
        mask_pairs = np.concatenate(
            [train_pairs, _check_pairs(exclude_pairs, "exclude_pairs", n_users, n_items)])
    codes = np.unique(interactions.pair_codes(eval_pairs, n_items))
    eval_pairs = np.stack([codes // n_items, codes % n_items], axis=1)

    chunk = min(int(chunk_size), n_users)
    n_chunks = -(-n_users // chunk)
    padded_users = n_chunks * chunk
    user_emb = np.pad(user_emb, ((0, padded_users - n_users), (0, 0)))
    n_rel = np.bincount(eval_pairs[:, 0], minlength=padded_users).astype(np.int32)
    mask_rows, mask_cols = _chunked_pairs(mask_pairs, chunk, n_chunks)
    eval_rows, eval_cols = _chunked_pairs(eval_pairs, chunk, n_chunks)

    item_dev = jnp.asarray(item_emb)
    results = []
    for c in range(n_chunks):  # Dispatch every chunk first; results are read afterwards.
        rows = slice(c * chunk, (c + 1) * chunk)
        results.append(_chunk_metrics(
            user_emb[rows], item_dev, mask_rows[c], mask_cols[c], eval_rows[c], eval_cols[c],
            n_rel[rows], ks=ks))
    per_user = np.concatenate([np.asarray(r) for r in results], axis=1).astype(np.float64)
    valid = n_rel > 0
    per_user = per_user[:, valid]  # [5, U_eval, len(ks)]
    out = {}
    for j, k in enumerate(ks):
        for m, name in enumerate(_METRICS):
            out[f"{name}@{k}"] = float(per_user[m + 1, :, j].mean())
        out[f"hr@{k}"] = float(per_user[0, :, j].sum() / n_rel.sum())
    return out
