"""BPR training triples: uniform negatives that are never one of the user's train items.

Two modes:
    * `make_bpr_sampler`: k fresh negatives per positive every epoch (key = fold_in(key, epoch)).
    * `static_triples` + `make_static_sampler`: the reference's static mode (spec metammf.md 1.4):
      k = 5 negatives per positive drawn once, without replacement, from the user's non-train
      items; each epoch only reshuffles the fixed triples.

Negatives are drawn exactly (no rejection loop): for a user with sorted train items t_0 < t_1 < ...,
the r-th non-train item (0-based) is r + #{m : t_m - m <= r}, and u * I + (t_m - m) is globally
sorted, so one `np.searchsorted` maps uniform ranks r in [0, I - |train_u|) to uniform non-train
items for all positives at once. Sampling runs in numpy on the host, seeded from the jax key, so it
is deterministic per key and costs well under a second per epoch at ML-100k size.

Every batch of an epoch has the same shape; the last batch is padded with user/item 0 and weight 0.

`exclude_items` (e.g. the held-out items of `interactions.cold_item_split`) are never negatives:
for the rank arithmetic they count as train items of every user, but never as positives.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.data.rec import interactions


class BPRBatches(NamedTuple):
    """One epoch of fixed-shape BPR batches (numpy; the trainer moves them to device).

    Attributes:
        users: int32 [N_b, B].
        pos: int32 [N_b, B] positive items.
        neg: int32 [N_b, B, k] negative items, never train items of the row's user.
        weight: float32 [N_b, B]; 1 for real rows, 0 for padding in the last batch.
    """

    users: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    weight: np.ndarray


class Triples(NamedTuple):
    """Fixed (user, positive, negatives) rows: users int32 [E], pos int32 [E], neg int32 [E, k]."""

    users: np.ndarray
    pos: np.ndarray
    neg: np.ndarray


class BPRSampler(NamedTuple):
    """epoch(key, epoch: int) -> BPRBatches; every epoch has num_batches batches of one shape."""

    epoch: Callable
    num_batches: int


class _FreeIndex(NamedTuple):
    users: np.ndarray    # int64 [E] unique train pairs (the positives), sorted by (user, item)
    items: np.ndarray    # int64 [E]
    gaps: np.ndarray     # int64 [E'] user * I + (t_m - m) over train + excluded, globally sorted
    starts: np.ndarray   # int64 [U] first row of each user in `gaps`
    n_free: np.ndarray   # int64 [U] number of non-train items per user
    n_items: int


def _numpy_rng(key):
    """A numpy Generator seeded deterministically from a jax PRNG key."""
    return np.random.default_rng(np.asarray(jax.random.bits(key, (4,), jnp.uint32)))


def _build_index(train_pairs, n_users, n_items, min_free, exclude_items=None):
    pairs = interactions.check_pairs(train_pairs, name="train_pairs", n_users=n_users,
                                     n_items=n_items)
    # Duplicate pairs would break the rank arithmetic; a pair is one positive however often seen.
    codes = np.unique(interactions.pair_codes(pairs, n_items))
    pos_users, pos_items = codes // n_items, codes % n_items
    blocked = codes
    excluded = _check_exclude(exclude_items, n_items)
    if excluded.size:
        # An excluded item is a "train item" of every user for the rank arithmetic only.
        grid = np.arange(n_users, dtype=np.int64)[:, None] * n_items + excluded[None, :]
        blocked = np.union1d(codes, grid.ravel())
    users, items = blocked // n_items, blocked % n_items
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_free = n_items - counts
    has_train = np.bincount(pos_users, minlength=n_users) > 0
    short = np.flatnonzero(has_train & (n_free < min_free))
    if short.size:
        u = int(short[0])
        raise ValueError(
            f"train_pairs: user {u} has {int(counts[u])} of n_items={n_items} items as train "
            f"(or excluded) items, leaving {int(n_free[u])} possible negatives; at least "
            f"{min_free} needed ({short.size} users affected). Drop such users, exclude fewer "
            "items or lower num_negatives.")
    gaps = users * n_items + (items - (np.arange(len(blocked)) - starts[users]))
    return _FreeIndex(pos_users, pos_items, gaps, starts, n_free, n_items)


def _check_exclude(exclude_items, n_items):
    """exclude_items as sorted unique int64 ids in [0, I) (empty if None)."""
    if exclude_items is None:
        return np.zeros(0, np.int64)
    items = np.asarray(exclude_items)
    if items.size == 0:
        return np.zeros(0, np.int64)
    if items.ndim != 1 or not np.issubdtype(items.dtype, np.integer):
        raise ValueError(
            f"exclude_items must be a 1-D int array of item ids, got {items.dtype} "
            f"{items.shape}. Pass e.g. the cold items of `cold_item_split`.")
    if items.min() < 0 or items.max() >= n_items:
        raise ValueError(
            f"exclude_items: item ids must lie in [0, {n_items}) (n_items={n_items}), got range "
            f"[{int(items.min())}, {int(items.max())}].")
    return np.unique(items.astype(np.int64))


def _free_items(index, users, ranks):
    """Maps ranks r in [0, n_free[u]) to the r-th non-train item of each user (int64, any shape)."""
    below = np.searchsorted(index.gaps, users * index.n_items + ranks, side="right")
    return ranks + below - index.starts[users]


def _check_positive(value, name):
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def batch_triples(triples, batch_size, key):
    """Shuffles fixed triples and cuts them into fixed-shape batches.

    Args:
        triples: Triples with E rows and k negatives.
        batch_size: B.
        key: jax PRNG key for the shuffle.

    Returns:
        BPRBatches with N_b = ceil(E / B); padded rows have user/items 0 and weight 0.
    """
    batch_size = _check_positive(batch_size, "batch_size")
    n = len(triples.users)
    n_batches = -(-n // batch_size)
    pad = n_batches * batch_size - n
    perm = _numpy_rng(key).permutation(n)

    def cut(x):
        x = np.asarray(x)[perm].astype(np.int32)
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], np.int32)])
        return x.reshape((n_batches, batch_size) + x.shape[1:])

    weight = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return BPRBatches(cut(triples.users), cut(triples.pos), cut(triples.neg),
                      weight.reshape(n_batches, batch_size))


def make_bpr_sampler(train_pairs, *, n_users, n_items, num_negatives, batch_size,
                     exclude_items=None):
    """Per-epoch resampled BPR triples with k uniform negatives per train pair.

    Args:
        train_pairs: int [E, 2] 0-based (user, item) pairs; duplicates count once.
        n_users: U.
        n_items: I.
        num_negatives: k, negatives per positive, drawn uniformly (with replacement) from the
            user's non-train items.
        batch_size: B.
        exclude_items: optional int [I_x] item ids never drawn as negatives (e.g. the held-out
            cold items of `interactions.cold_item_split`).

    Returns:
        BPRSampler whose `epoch(key, epoch)` returns that epoch's shuffled BPRBatches, drawn from
        fold_in(key, epoch): the same (key, epoch) always gives the same batches.

    Raises:
        ValueError: on bad pairs/ids/sizes, or if a user's train items cover every item.
    """
    k = _check_positive(num_negatives, "num_negatives")
    batch_size = _check_positive(batch_size, "batch_size")
    index = _build_index(train_pairs, n_users, n_items, min_free=1, exclude_items=exclude_items)
    n = len(index.users)

    def epoch(key, epoch):
        epoch_key = jax.random.fold_in(key, epoch)
        rng = _numpy_rng(jax.random.fold_in(epoch_key, 0))
        high = index.n_free[index.users][:, None]
        neg = _free_items(index, index.users[:, None], rng.integers(0, high, size=(n, k)))
        triples = Triples(index.users, index.items, neg)
        return batch_triples(triples, batch_size, jax.random.fold_in(epoch_key, 1))

    return BPRSampler(epoch=epoch, num_batches=-(-n // batch_size))


def static_triples(train_pairs, *, n_users, n_items, key, num_negatives=5,
                   single_negative_rows=False, exclude_items=None):
    """The reference's static negatives: k per positive, drawn once without replacement.

    Args:
        train_pairs: int [E, 2] 0-based (user, item) pairs; duplicates count once.
        n_users: U.
        n_items: I.
        key: jax PRNG key.
        num_negatives: k (the reference uses 5).
        single_negative_rows: if True, return E * k rows with one negative each, the reference's
            (u, i, j) layout in which every triple is shuffled on its own.
        exclude_items: optional int [I_x] item ids never drawn as negatives.

    Returns:
        Triples: users [E], pos [E], neg [E, k] (or [E * k], [E * k], [E * k, 1]); the k
        negatives of a row are distinct non-train items of its user. Val/test items may be
        negatives, as in the reference.

    Raises:
        ValueError: on bad pairs/ids, or if a user has fewer than k non-train items.
    """
    k = _check_positive(num_negatives, "num_negatives")
    index = _build_index(train_pairs, n_users, n_items, min_free=k, exclude_items=exclude_items)
    rng = _numpy_rng(key)
    n = len(index.users)
    n_free = index.n_free[index.users]
    ranks = np.empty((n, k), np.int64)
    # Floyd's algorithm, vectorised over rows: a uniform k-subset of [0, n_free) per row.
    for j in range(k):
        top = n_free - k + j
        t = rng.integers(0, top + 1)
        taken = (ranks[:, :j] == t[:, None]).any(axis=1)
        ranks[:, j] = np.where(taken, top, t)
    ranks = rng.permuted(ranks, axis=1)
    neg = _free_items(index, index.users[:, None], ranks).astype(np.int32)
    users, pos = index.users.astype(np.int32), index.items.astype(np.int32)
    if single_negative_rows:
        return Triples(np.repeat(users, k), np.repeat(pos, k), neg.reshape(n * k, 1))
    return Triples(users, pos, neg)


def make_static_sampler(triples, *, batch_size):
    """Epochs that only reshuffle fixed triples (static mode).

    Args:
        triples: Triples from `static_triples`.
        batch_size: B.

    Returns:
        BPRSampler; `epoch(key, epoch)` shuffles with fold_in(key, epoch).
    """
    batch_size = _check_positive(batch_size, "batch_size")

    def epoch(key, epoch):
        return batch_triples(triples, batch_size, jax.random.fold_in(key, epoch))

    return BPRSampler(epoch=epoch, num_batches=-(-len(triples.users) // batch_size))
