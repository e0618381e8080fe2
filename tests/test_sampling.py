"""Tests for metafusion_jax.metammf.sampling (BPR negatives, per-epoch and static)."""
import time

import jax
import numpy as np
import pytest

from metafusion_jax.metammf import sampling


def small_case(seed=0, n_users=7, n_items=9):
    rng = np.random.default_rng(seed)
    train = rng.random((n_users, n_items)) < 0.4
    train[0] = True
    train[0, 4] = False  # user 0 has exactly one possible negative
    train[1] = False     # user 1 has no train items
    train[2, :3] = True
    return np.argwhere(train), train


def test_free_item_mapping_matches_brute_force():
    pairs, train = small_case()
    index = sampling._build_index(pairs, 7, 9, min_free=1)
    for u in range(7):
        free = [i for i in range(9) if not train[u, i]]
        ranks = np.arange(len(free))
        got = sampling._free_items(index, np.full_like(ranks, u), ranks)
        np.testing.assert_array_equal(got, free)


def test_negatives_never_train_items_and_batch_layout():
    pairs, train = small_case()
    sampler = sampling.make_bpr_sampler(pairs, n_users=7, n_items=9, num_negatives=4,
                                        batch_size=5)
    n = len(pairs)
    assert sampler.num_batches == -(-n // 5)
    for epoch in range(5):
        b = sampler.epoch(jax.random.key(3), epoch)
        assert b.users.shape == b.pos.shape == b.weight.shape == (sampler.num_batches, 5)
        assert b.neg.shape == (sampler.num_batches, 5, 4)
        assert b.users.dtype == b.pos.dtype == b.neg.dtype == np.int32
        assert b.weight.dtype == np.float32
        w = b.weight.reshape(-1)
        np.testing.assert_array_equal(w, np.arange(len(w)) < n)  # padding only at the end
        users, pos = b.users.reshape(-1)[:n], b.pos.reshape(-1)[:n]
        neg = b.neg.reshape(-1, 4)[:n]
        # Every train pair appears exactly once per epoch.
        assert sorted(zip(users.tolist(), pos.tolist())) == sorted(map(tuple, pairs.tolist()))
        assert train[users, pos].all()
        assert not train[users[:, None], neg].any()
        assert ((neg >= 0) & (neg < 9)).all()
        assert (neg[users == 0] == 4).all()
        assert (b.neg.reshape(-1, 4)[n:] == 0).all() and (b.users.reshape(-1)[n:] == 0).all()


def test_deterministic_per_key_and_fresh_each_epoch():
    pairs, _ = small_case(seed=1, n_users=20, n_items=30)
    sampler = sampling.make_bpr_sampler(pairs, n_users=20, n_items=30, num_negatives=2,
                                        batch_size=16)
    a = sampler.epoch(jax.random.key(0), 0)
    b = sampler.epoch(jax.random.key(0), 0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = sampler.epoch(jax.random.key(0), 1)
    d = sampler.epoch(jax.random.key(1), 0)
    assert not np.array_equal(a.users, c.users) and not np.array_equal(a.neg, c.neg)
    assert not np.array_equal(a.neg, d.neg)
    # Negatives differ even for the same rows: compare per (user, pos) after sorting rows.
    def by_pair(x):
        order = np.lexsort((x.pos.reshape(-1), x.users.reshape(-1)))
        return x.neg.reshape(-1, 2)[order]
    assert (by_pair(a) != by_pair(c)).mean() > 0.5


def test_negatives_are_uniform_over_non_train_items():
    n_items = 8
    train_items = [0, 3, 4]
    pairs = np.array([[0, i] for i in train_items])
    sampler = sampling.make_bpr_sampler(pairs, n_users=1, n_items=n_items, num_negatives=2000,
                                        batch_size=3)
    neg = sampler.epoch(jax.random.key(0), 0).neg.reshape(-1)
    counts = np.bincount(neg, minlength=n_items)
    assert counts[train_items].sum() == 0
    free = np.setdiff1d(np.arange(n_items), train_items)
    expected = len(neg) / len(free)
    chi2 = ((counts[free] - expected) ** 2 / expected).sum()
    assert chi2 < 23.5  # df = 4, p ~ 1e-4


def test_ml100k_sized_epoch_is_fast():
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 943 * 1682, 80_000))
    pairs = np.stack([codes // 1682, codes % 1682], axis=1)
    sampler = sampling.make_bpr_sampler(pairs, n_users=943, n_items=1682, num_negatives=1,
                                        batch_size=2048)
    sampler.epoch(jax.random.key(0), 0)
    start = time.perf_counter()
    sampler.epoch(jax.random.key(0), 1)
    assert time.perf_counter() - start < 1.0


def test_static_triples_without_replacement_and_fixed():
    pairs, train = small_case(seed=2, n_users=12, n_items=15)
    train[0] = False
    pairs = np.argwhere(train)  # ensure each user has >= 5 non-train items
    pairs = pairs[(15 - train.sum(1))[pairs[:, 0]] >= 5]
    train = np.zeros_like(train)
    train[pairs[:, 0], pairs[:, 1]] = True
    key = jax.random.key(4)
    trip = sampling.static_triples(pairs, n_users=12, n_items=15, key=key)
    n = len(pairs)
    assert trip.users.shape == trip.pos.shape == (n,) and trip.neg.shape == (n, 5)
    assert not train[trip.users[:, None], trip.neg].any()
    assert all(len(set(row)) == 5 for row in trip.neg.tolist())
    again = sampling.static_triples(pairs, n_users=12, n_items=15, key=key)
    np.testing.assert_array_equal(trip.neg, again.neg)

    sampler = sampling.make_static_sampler(trip, batch_size=7)
    rows = []
    for epoch in range(2):
        b = sampler.epoch(key, epoch)
        valid = b.weight.reshape(-1) > 0
        assert valid.sum() == n and b.neg.shape == (sampler.num_batches, 7, 5)
        rows.append((b.users.reshape(-1)[valid], b.pos.reshape(-1)[valid],
                     b.neg.reshape(-1, 5)[valid]))
    assert not np.array_equal(rows[0][0], rows[1][0])  # reshuffled
    def canon(r):
        return sorted(zip(r[0].tolist(), r[1].tolist(), map(tuple, r[2].tolist())))
    want = canon((trip.users, trip.pos, trip.neg))
    assert canon(rows[0]) == canon(rows[1]) == want  # same fixed triples every epoch

    flat = sampling.static_triples(pairs, n_users=12, n_items=15, key=key,
                                   single_negative_rows=True)
    assert flat.neg.shape == (5 * n, 1)
    np.testing.assert_array_equal(flat.neg.reshape(n, 5), trip.neg)
    np.testing.assert_array_equal(flat.users, np.repeat(trip.users, 5))


def test_static_negatives_marginally_uniform():
    # 2000 users with the same train items {0, 1}: each of the 8 free items is picked with
    # probability 5/8 per row.
    n_users, n_items = 2000, 10
    pairs = np.array([[u, i] for u in range(n_users) for i in (0, 1)])
    trip = sampling.static_triples(pairs, n_users=n_users, n_items=n_items,
                                   key=jax.random.key(0))
    counts = np.bincount(trip.neg.reshape(-1), minlength=n_items)
    assert counts[:2].sum() == 0
    expected = len(pairs) * 5 / 8
    chi2 = ((counts[2:] - expected) ** 2 / expected).sum()
    assert chi2 < 25.0  # df = 7, p ~ 1e-3 (rows are not independent, still well inside)
    # The position within a row is also uniform (rows are permuted after Floyd's algorithm).
    first = np.bincount(trip.neg[:, 0], minlength=n_items)[2:]
    assert np.abs(first / len(pairs) - 1 / 8).max() < 0.02


@pytest.mark.parametrize("kwargs,match", [
    (dict(train_pairs=np.array([[0, 0], [0, 1], [0, 2]])), "user 0 has 3 of n_items=3"),
    (dict(train_pairs=np.zeros((4, 3), int)), "train_pairs must have shape"),
    (dict(train_pairs=np.zeros((0, 2), int)), "train_pairs are empty"),
    (dict(train_pairs=np.array([[0.0, 1.0]])), "integer dtype"),
    (dict(train_pairs=np.array([[2, 0]])),
     r"train_pairs: user ids must lie in \[0, 2\) \(n_users=2\)"),
    (dict(train_pairs=np.array([[0, 3]])),
     r"train_pairs: item ids must lie in \[0, 3\) \(n_items=3\)"),
    (dict(num_negatives=0), "num_negatives must be a positive integer"),
    (dict(batch_size=2.5), "batch_size must be a positive integer"),
])
def test_sampler_errors(kwargs, match):
    args = dict(train_pairs=np.array([[0, 1]]), n_users=2, n_items=3, num_negatives=1,
                batch_size=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sampling.make_bpr_sampler(**args)


def test_static_needs_enough_negatives():
    pairs = np.array([[0, 0], [0, 1], [1, 0]])
    with pytest.raises(ValueError, match="leaving 4 possible negatives; at least 5"):
        sampling.static_triples(pairs, n_users=2, n_items=6, key=jax.random.key(0))
