"""Full-ranking top-K evaluation for implicit-feedback recommenders.

Every user is scored against every item by a dot product; the user's train items (and any extra
`exclude_pairs`, e.g. val pairs when testing) are removed from the candidates; the top max(ks)
items are picked and the metrics are computed from the hits. Users are processed in chunks of a
constant shape C (the last chunk is padded), so peak memory is about C x I scores per device and
there is one compile per (C, I, H, max(ks)) and padded pair count.

Speed (benchmarks/bench_ranking.py). Per chunk the scores are one GEMM; masking is an in-place
scatter of -inf at the chunk's (row, item) pairs; the top-K is exact (`top_k`): on CPU a native
kernel (`native_topk.py`, one pass a row; XLA's CPU top_k calls a comparator per element), else
two-stage in XLA: the maxima of item blocks of `TOPK_BLOCK` ([C, I / B], a cheap reduction),
`lax.top_k` over them picks the K blocks that must hold the top K, and `lax.top_k` runs over those
K x B candidates only. The chunk size is the tuned `DEFAULT_CHUNK` unless the caller passes one.

Devices. `user_emb` may be a sharded jax.Array (rows split over a mesh axis, e.g. the output of
a jitted embed on a mesh): each device scores its own user chunks (`jax.shard_map` over that
axis; items are replicated on the mesh by XLA), the embeddings never go to the host, and only
the per-user metric values [5, U, len(ks)] come back. The metrics equal the unsharded ones.

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
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from metafusion_jax.data.rec import interactions
from metafusion_jax.metrics import native_topk

_METRICS = ("precision", "recall", "ndcg", "map")
_PAD_MULTIPLE = 1024  # Padded pair counts are rounded up so similar inputs reuse one compile.
DEFAULT_CHUNK = 512   # users per chunk when chunk_size is None (bench_ranking.py: best at ML size)
TOPK_BLOCK = 16       # items per block of the two-stage top-K (best of 8..64, bench_ranking)


def _check_embedding(x, name):
    """float32 [N, H] numpy or jax array; a jax array stays where it is (no host copy)."""
    on_device = isinstance(x, jax.Array)
    if not on_device:
        x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must have shape [N, H], got shape {x.shape}. Pass one row per user/item.")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}. Cast to float32.")
    bad = int(_count_non_finite(x)) if on_device else int((~np.isfinite(x)).sum())
    if bad:
        raise ValueError(
            f"{name} contains {bad} NaN/inf values. "
            "Check the model output (diverged training?) before evaluating.")
    return x.astype(jnp.float32) if on_device else x.astype(np.float32)


@jax.jit
def _count_non_finite(x):
    return jnp.sum(~jnp.isfinite(x))


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
    users, items = np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])
    chunk = users // chunk_size
    counts = np.bincount(chunk, minlength=n_chunks)
    if np.any(chunk[1:] < chunk[:-1]):  # train pairs often come sorted by user already
        key = chunk.astype(np.int16) if n_chunks <= np.iinfo(np.int16).max else chunk
        order = np.argsort(key, kind="stable")  # a radix sort for int16 keys
        users, items = users[order], items[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    width = max(_PAD_MULTIPLE, -(-int(counts.max(initial=0)) // _PAD_MULTIPLE) * _PAD_MULTIPLE)
    rows = np.full(n_chunks * width, chunk_size, np.int32)
    cols = np.zeros(n_chunks * width, np.int32)
    ids = np.arange(n_chunks)
    flat = np.arange(len(users)) + np.repeat(ids * width - starts, counts)  # chunk c's slots
    rows[flat] = users - np.repeat(ids * chunk_size, counts)
    cols[flat] = items
    rows, cols = rows.reshape(n_chunks, width), cols.reshape(n_chunks, width)
    return rows, cols


def top_k(scores, k, block=TOPK_BLOCK, platform=None):
    """Exact `lax.top_k` over the last axis of [C, I'] scores (same values, ids and ties).

    For `platform` "cpu" (default: `jax.default_backend()`) with the native kernel built
    (`native_topk.available()`): the kernel (one pass a row; `native_topk.py`). Otherwise, e.g.
    on accelerators or without a C++ compiler: the pure-XLA `two_stage_top_k`. No derivative.

    Returns:
        (values float32 [C, k], item ids int32 [C, k]).
    """
    if (platform or jax.default_backend()) == "cpu" and native_topk.available():
        return tuple(native_topk.top_k(scores, k))
    return tuple(two_stage_top_k(scores, k, block))


def two_stage_top_k(scores, k, block=TOPK_BLOCK):
    """Exact `lax.top_k` over the last axis of [C, I'] scores, I' a multiple of `block`.

    Two stages: the k blocks with the largest maxima (ties: the lower block) hold the top k
    elements, so `lax.top_k` runs over [C, k * block] candidates, kept in item order so that
    ties go to the lower item id as in `lax.top_k`. Falls back to `lax.top_k` when there are
    fewer than 4k blocks.

    Returns:
        (values float32 [C, k], item ids int32 [C, k]).
    """
    n_rows, width = scores.shape
    n_blocks = width // block
    if width % block or n_blocks < 4 * k:
        return lax.top_k(scores, k)
    blocks = scores.reshape(n_rows, n_blocks, block)
    _, best = lax.top_k(blocks.max(axis=2), k)                       # [C, k]
    best = jnp.sort(best, axis=1)
    cand = blocks[jnp.arange(n_rows)[:, None], best].reshape(n_rows, k * block)
    vals, pos = lax.top_k(cand, k)
    ids = jnp.take_along_axis(best, pos // block, axis=1) * block + pos % block
    return vals, ids


def _chunk_metrics(user_emb, item_emb, mask_rows, mask_cols, eval_rows, eval_cols, n_rel, *, ks,
                   n_items, platform=None):
    """Per-user metrics for one chunk of C users.

    Args:
        user_emb: float32 [C, H'], H' = H, or H + 1 with a last column 1 when I' > I.
        item_emb: float32 [I', H']: items padded to I' rows (I' = I with the native top-k; a
            multiple of TOPK_BLOCK for the two-stage one), plus, when I' > I, a last column that
            is 0 for real items and -inf for padding rows (user rows get a 1 there), so padding
            scores are -inf straight out of the GEMM and real scores are unchanged.
        mask_rows, mask_cols: int32 [P]; (row-in-chunk, item) pairs to mask; row C is padding.
        eval_rows, eval_cols: int32 [P']; relevant (row-in-chunk, item) pairs, sorted by
            (row, item) and unique; row C is padding (at the end).
        n_rel: int32 [C]; number of relevant items per user.
        ks: static tuple of cut-offs.
        n_items: I, the real items.
        platform: the devices' platform ("cpu" picks the native top-k; see `top_k`).

    Returns:
        float32 [5, C, len(ks)]: hits, precision, recall, ndcg, map.
    """
    max_k = max(ks)
    del n_items  # padding items score -inf through the extra column
    scores = jnp.matmul(user_emb, item_emb.T, precision=lax.Precision.HIGHEST)  # [C, I']
    scores = scores.at[mask_rows, mask_cols].set(-jnp.inf, mode="drop")
    top_vals, top_idx = top_k(scores, max_k, platform=platform)  # [C, max_k]
    # hit = (row, item) is an eval pair: a lookup in the chunk's [C + 1, I'] relevance bitmap
    # (row C takes the padding pairs; cheaper on CPU than a binary search of sorted pair codes)
    n_rows, width = scores.shape
    relevant = jnp.zeros((n_rows + 1, width), jnp.bool_).at[eval_rows, eval_cols].set(True)
    hit = jnp.take_along_axis(relevant[:n_rows], top_idx, axis=1)
    hit = (hit & (top_vals > -jnp.inf)).astype(jnp.float32)

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


@functools.lru_cache(maxsize=32)
def _round_fn(mesh, axis, ks, n_items):
    """jit: round r of n = mesh.shape[axis] chunks, one per device ([5, n C, len(ks)])."""
    platform = mesh.devices.flat[0].platform

    def local(users, items, mask_rows, mask_cols, eval_rows, eval_cols, n_rel):
        return _chunk_metrics(users, items, mask_rows[0], mask_cols[0], eval_rows[0],
                              eval_cols[0], n_rel, ks=ks, n_items=n_items, platform=platform)

    sharded = jax.shard_map(local, mesh=mesh, out_specs=P(None, axis),
                            in_specs=(P(axis), P(), P(axis), P(axis), P(axis), P(axis), P(axis)))

    @jax.jit
    def run(users, r, items, mask_rows, mask_cols, eval_rows, eval_cols, n_rel):
        return sharded(users[r], items, mask_rows[r], mask_cols[r], eval_rows[r], eval_cols[r],
                       n_rel[r])

    return run


def _user_mesh(user_emb, axis="users"):
    """(mesh, axis) that the user chunks are split over: the mesh axis that splits user_emb's
    rows; for an array replicated on a mesh, that mesh's first axis of size > 1; else a mesh of
    the array's devices (1 device for numpy input)."""
    sharding = getattr(user_emb, "sharding", None)
    if isinstance(sharding, NamedSharding):
        mesh = sharding.mesh
        name = sharding.spec[0] if len(sharding.spec) > 0 else None
        name = name[0] if isinstance(name, tuple) and len(name) == 1 else name
        if isinstance(name, str) and mesh.shape[name] > 1:
            return mesh, name
        wide = [n for n in mesh.axis_names if mesh.shape[n] > 1]
        return mesh, (wide or list(mesh.axis_names))[0]
    if isinstance(user_emb, jax.Array):
        devices = sorted(user_emb.devices(), key=lambda d: d.id)
        return Mesh(np.array(devices), (axis,)), axis
    return Mesh(np.array([jax.local_devices()[0]]), (axis,)), axis


def _on_mesh(x, mesh):
    """A jax.Array on other devices than `mesh` is copied there (device to device), replicated."""
    if isinstance(x, jax.Array) and set(x.devices()) != set(mesh.devices.flat):
        return jax.device_put(x, NamedSharding(mesh, P()))
    return x


def _place_users(user_emb, shape, sharding):
    """user_emb [U, H] padded (rows, and the 1 column if shape[2] = H + 1) and reshaped to
    `shape` [n_rounds, n C, H'], on the mesh."""
    n_users = user_emb.shape[0]
    pad = shape[0] * shape[1] - n_users
    if isinstance(user_emb, jax.Array):
        return _pad_users_fn(shape, sharding)(user_emb)
    return jax.device_put(np.pad(user_emb, ((0, pad), (0, shape[2] - user_emb.shape[1])),
                                 constant_values=1.0).reshape(shape), sharding)


@functools.lru_cache(maxsize=32)
def _pad_users_fn(shape, sharding):
    """One jit per (shape, sharding), not one per call: [U, H] -> [n_rounds, n C, H']."""
    n_rows = shape[0] * shape[1]
    return jax.jit(lambda u: jnp.pad(u, ((0, n_rows - u.shape[0]), (0, shape[2] - u.shape[1])),
                                     constant_values=1.0).reshape(shape), out_shardings=sharding)


@functools.lru_cache(maxsize=32)
def _pad_items_fn(n_padded, sharding):
    """One jit per (n_padded, sharding) of `_pad_items`."""
    return jax.jit(functools.partial(_pad_items, n_padded=n_padded), out_shardings=sharding)


def _pad_items(x, n_padded):
    """[I, H] -> [n_padded, H + 1] with the -inf padding column (see `_chunk_metrics`); x itself
    when n_padded = I."""
    if n_padded == x.shape[0]:
        return x
    xp = jnp if isinstance(x, jax.Array) else np
    column = xp.where(xp.arange(n_padded) < x.shape[0], 0.0, -np.inf).astype(np.float32)
    return xp.concatenate([xp.pad(x, ((0, n_padded - x.shape[0]), (0, 0))), column[:, None]],
                          axis=1)


def ranking_metrics(user_emb, item_emb, train_pairs, eval_pairs, ks=(10, 20), exclude_pairs=None,
                    chunk_size=None):
    """Full-ranking top-K metrics (definitions in the module docstring).

    Args:
        user_emb: float [U, H] user embeddings (numpy, or a jax.Array, also one whose rows are
            sharded over a mesh axis: then each device scores its own user chunks).
        item_emb: float [I, H] item embeddings; scores are `user_emb @ item_emb.T`.
        train_pairs: int [E, 2] 0-based (user, item) pairs removed from the candidates.
        eval_pairs: int [E', 2] 0-based relevant (user, item) pairs (val or test).
        ks: cut-offs, each in [1, I].
        exclude_pairs: optional int [E'', 2] extra pairs to remove from the candidates (e.g. val
            pairs when evaluating on test).
        chunk_size: users scored at once per device (C); memory is about C x I float32 scores.
            None (default): `DEFAULT_CHUNK`, capped at the users per device.

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
    if chunk_size is not None and (not _is_int(chunk_size) or chunk_size < 1):
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

    mesh, axis = _user_mesh(user_emb)
    n_dev = int(mesh.shape[axis])
    chunk = min(int(chunk_size or DEFAULT_CHUNK), -(-n_users // n_dev))
    native = mesh.devices.flat[0].platform == "cpu" and native_topk.available()
    padded_items = n_items if native else -(-n_items // TOPK_BLOCK) * TOPK_BLOCK
    width = hidden + int(padded_items > n_items)  # the -inf column only for padding items
    chunk = max(1, min(chunk, (2 ** 31 - 1) // padded_items - 1))  # C x I' < 2^31 (int32 indexing)
    n_rounds = -(-n_users // (chunk * n_dev))
    n_chunks = n_rounds * n_dev
    padded_users = n_chunks * chunk
    n_rel = np.bincount(eval_pairs[:, 0], minlength=padded_users).astype(np.int32)
    by_round = NamedSharding(mesh, P(None, axis))
    host = [a.reshape(n_rounds, n_dev, -1) for a in (
        *_chunked_pairs(mask_pairs, chunk, n_chunks), *_chunked_pairs(eval_pairs, chunk, n_chunks))]
    mask_rows, mask_cols, eval_rows, eval_cols = jax.device_put(host, by_round)
    n_rel_dev = jax.device_put(n_rel.reshape(n_rounds, n_dev * chunk), by_round)
    users = _place_users(_on_mesh(user_emb, mesh), (n_rounds, n_dev * chunk, width), by_round)
    item_emb = _on_mesh(item_emb, mesh)
    if isinstance(item_emb, jax.Array):
        items = _pad_items_fn(padded_items, NamedSharding(mesh, P()))(item_emb)
    else:
        items = jax.device_put(_pad_items(item_emb, padded_items), NamedSharding(mesh, P()))
    run = _round_fn(mesh, axis, ks, n_items)
    results = []  # all rounds dispatched first, read afterwards
    for r in range(n_rounds):
        results.append(run(users, r, items, mask_rows, mask_cols, eval_rows, eval_cols,
                           n_rel_dev))
        if n_dev > 1 and jax.default_backend() == "cpu" and r % 16 == 15:
            results[-1].block_until_ready()  # fake CPU devices: keep the queue short (STACK.md)
    per_user = np.concatenate([np.asarray(r) for r in results], axis=1).astype(np.float64)
    valid = n_rel > 0
    per_user = per_user[:, valid]  # [5, U_eval, len(ks)]
    out = {}
    for j, k in enumerate(ks):
        for m, name in enumerate(_METRICS):
            out[f"{name}@{k}"] = float(per_user[m + 1, :, j].mean())
        out[f"hr@{k}"] = float(per_user[0, :, j].sum() / n_rel.sum())
    return out
