"""Tests for metafusion_jax.metrics.ranking against hand values and a slow per-user reference."""
import math

import numpy as np
import pytest

from metafusion_jax.metrics.ranking import ranking_metrics
from reliability import bad_input


def reference_metrics(user_emb, item_emb, train, evals, ks, exclude=None):
    """Per-user Python loop written from the definitions, not from the vectorised code."""
    user_emb = np.asarray(user_emb, np.float64)
    item_emb = np.asarray(item_emb, np.float64)
    n_users, n_items = len(user_emb), len(item_emb)
    masked = [set() for _ in range(n_users)]
    for u, i in list(map(tuple, train)) + list(map(tuple, exclude if exclude is not None else [])):
        masked[u].add(int(i))
    relevant = [set() for _ in range(n_users)]
    for u, i in evals:
        relevant[u].add(int(i))
    sums = {f"{m}@{k}": 0.0 for m in ("precision", "recall", "ndcg", "map") for k in ks}
    hits_total = {k: 0 for k in ks}
    n_rel_total, n_eval_users = 0, 0
    for u in range(n_users):
        rel = relevant[u]
        if not rel:
            continue
        n_eval_users += 1
        n_rel_total += len(rel)
        candidates = [i for i in range(n_items) if i not in masked[u]]
        scores = np.array([user_emb[u] @ item_emb[i] for i in candidates])
        order = np.argsort(-scores, kind="stable")  # equal scores keep ascending item id
        ranked = [candidates[j] for j in order]
        for k in ks:
            top = ranked[:k]
            hits = [1.0 if i in rel else 0.0 for i in top]
            n_hits = sum(hits)
            hits_total[k] += n_hits
            sums[f"precision@{k}"] += n_hits / k
            sums[f"recall@{k}"] += n_hits / len(rel)
            dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
            idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
            sums[f"ndcg@{k}"] += dcg / idcg
            ap, running = 0.0, 0.0
            for j, h in enumerate(hits):
                running += h
                ap += running / (j + 1) * h
            sums[f"map@{k}"] += ap / min(len(rel), k)
    out = {name: value / n_eval_users for name, value in sums.items()}
    out.update({f"hr@{k}": hits_total[k] / n_rel_total for k in ks})
    return out


def random_case(seed, n_users=37, n_items=40, hidden=4, quantised=False):
    rng = np.random.default_rng(seed)
    if quantised:  # small integers: exact float32 dot products with many ties
        user_emb = rng.integers(-2, 3, (n_users, hidden)).astype(np.float32)
        item_emb = rng.integers(-2, 3, (n_items, hidden)).astype(np.float32)
    else:
        user_emb = rng.normal(size=(n_users, hidden)).astype(np.float32)
        item_emb = rng.normal(size=(n_items, hidden)).astype(np.float32)
    # Disjoint train / exclude / eval per pair; ~1/4 of users get no eval items.
    split = rng.choice(4, size=(n_users, n_items), p=[0.3, 0.1, 0.3, 0.3])
    no_eval = rng.random(n_users) < 0.25
    split[no_eval] = np.where(split[no_eval] == 2, 3, split[no_eval])
    train = np.argwhere(split == 0)
    exclude = np.argwhere(split == 1)
    evals = np.argwhere(split == 2)
    return user_emb, item_emb, train, evals, exclude


@pytest.mark.parametrize("seed,quantised,use_exclude,chunk_size", [
    (0, False, False, 8),
    (1, False, True, 5),
    (2, True, False, 37),
    (3, True, True, 11),
    (4, False, True, 4096),
])
def test_matches_reference(seed, quantised, use_exclude, chunk_size):
    user_emb, item_emb, train, evals, exclude = random_case(seed, quantised=quantised)
    exclude = exclude if use_exclude else None
    ks = (1, 3, 10)
    n_rel = np.bincount(evals[:, 0], minlength=len(user_emb))
    assert (n_rel == 0).any() and (n_rel > 10).any()  # skipped users and |rel| > K both occur
    got = ranking_metrics(user_emb, item_emb, train, evals, ks=ks, exclude_pairs=exclude,
                          chunk_size=chunk_size)
    want = reference_metrics(user_emb, item_emb, train, evals, ks, exclude)
    assert set(got) == set(want)
    for name in want:
        assert isinstance(got[name], float)
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_independent_of_chunk_size():
    user_emb, item_emb, train, evals, exclude = random_case(7, n_users=50)
    results = [ranking_metrics(user_emb, item_emb, train, evals, ks=(5, 20), exclude_pairs=exclude,
                               chunk_size=c) for c in (1, 7, 16, 50, 1000)]
    for other in results[1:]:
        for name, value in results[0].items():
            np.testing.assert_allclose(other[name], value, rtol=1e-6, err_msg=name)


def test_hand_computed():
    # User 0 scores items 5,4,3,2,1; user 1 the reverse; user 2 has no eval items (skipped).
    user_emb = np.array([[1.0], [-1.0], [1.0]], np.float32)
    item_emb = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], np.float32)
    train = np.array([[0, 0], [1, 4], [2, 1]])
    evals = np.array([[0, 1], [0, 3], [1, 0], [0, 3]])  # duplicate (0, 3) counts once
    got = ranking_metrics(user_emb, item_emb, train, evals, ks=(2, 3))
    # User 0 ranks [1, 2, 3, 4] (item 0 masked): hits [1, 0, 1]; user 1 ranks [3, 2, 1, 0]: none.
    idcg2 = 1 + 1 / math.log2(3)
    want = {
        "precision@2": (1 / 2) / 2, "recall@2": (1 / 2) / 2, "ndcg@2": (1 / idcg2) / 2,
        "map@2": (1 / 2) / 2, "hr@2": 1 / 3,
        "precision@3": (2 / 3) / 2, "recall@3": 1 / 2, "ndcg@3": (1.5 / idcg2) / 2,
        "map@3": ((1 + 2 / 3) / 2) / 2, "hr@3": 2 / 3,
    }
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-6), name
    assert got["ndcg@2"] == pytest.approx(0.3065736, abs=1e-6)
    assert got["map@3"] == pytest.approx(0.4166667, abs=1e-6)


def test_ties_go_to_lower_item_id():
    user_emb = np.zeros((2, 3), np.float32)  # every score is 0
    item_emb = np.ones((10, 3), np.float32)
    train = np.array([[0, 0], [1, 2]])
    evals = np.array([[0, 1], [0, 5], [1, 3]])
    got = ranking_metrics(user_emb, item_emb, train, evals, ks=(3,))
    # User 0 top-3 = [1, 2, 3] -> hits [1, 0, 0]; user 1 top-3 = [0, 1, 3] -> hits [0, 0, 1].
    assert got["precision@3"] == pytest.approx(2 / 6)
    assert got["hr@3"] == pytest.approx(2 / 3)
    assert got["recall@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["ndcg@3"] == pytest.approx((1 / (1 + 1 / math.log2(3)) + 0.5) / 2)
    assert got["map@3"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_masked_eval_items_never_hit_and_short_candidate_lists():
    user_emb = np.array([[1.0]], np.float32)
    item_emb = np.array([[3.0], [2.0], [1.0]], np.float32)
    # Item 0 is both train and eval: it stays in |rel| but cannot be hit. Only 2 candidates < K=3.
    got = ranking_metrics(user_emb, item_emb, [[0, 0]], [[0, 0], [0, 2]], ks=(3,))
    assert got["precision@3"] == pytest.approx(1 / 3)
    assert got["recall@3"] == pytest.approx(1 / 2)
    assert got["hr@3"] == pytest.approx(1 / 2)
    assert got["map@3"] == pytest.approx((1 / 2) / 2)
    assert got["ndcg@3"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_accepts_jax_arrays_and_empty_train():
    import jax.numpy as jnp
    user_emb, item_emb, _, evals, _ = random_case(5)
    got = ranking_metrics(jnp.asarray(user_emb), jnp.asarray(item_emb), np.zeros((0, 2), int),
                          evals, ks=(4,))
    want = reference_metrics(user_emb, item_emb, [], evals, (4,))
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("change,match", [
    (dict(item_emb=np.zeros((5, 3), np.float32)), "hidden size H"),
    (dict(user_emb=np.zeros((4,), np.float32)), "user_emb must have shape"),
    (dict(user_emb=np.full((4, 2), np.nan, np.float32)), "user_emb contains 8 NaN/inf"),
    (dict(item_emb=np.full((5, 2), np.inf, np.float32)), "item_emb contains 10 NaN/inf"),
    (dict(train_pairs=np.zeros((3, 3), int)), "train_pairs must have shape"),
    (dict(eval_pairs=np.array([[4, 0]])), r"eval_pairs: user ids must lie in \[0, 4\)"),
    (dict(eval_pairs=np.array([[0, 5]])), r"eval_pairs: item ids must lie in \[0, 5\) "
                                          r"\(n_items=5\), got range \[5, 5\]. Ids index the "
                                          r"embedding rows"),
    (dict(exclude_pairs=np.array([[0, -1]])), "exclude_pairs: item ids"),
    (dict(eval_pairs=np.array([[0.0, 1.0]])), "eval_pairs must have an integer dtype"),
    (dict(eval_pairs=np.zeros((0, 2), int)), "eval_pairs is empty"),
    (dict(ks=(0,)), "ks must be"),
    (dict(ks=(6,)), "ks must be"),
    (dict(chunk_size=0), "chunk_size"),
])
def test_errors(change, match):
    args = dict(user_emb=np.ones((4, 2), np.float32), item_emb=np.ones((5, 2), np.float32),
                train_pairs=np.array([[0, 1]]), eval_pairs=np.array([[0, 2]]), ks=(2,))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        ranking_metrics(**args)


def _args(**change):
    args = dict(user_emb=np.ones((4, 2), np.float32), item_emb=np.ones((5, 2), np.float32),
                train_pairs=np.array([[0, 1]]), eval_pairs=np.array([[0, 2]]), ks=(2,))
    return {**args, **change}


def test_non_integer_ks_and_chunk_size():
    with bad_input("ranking_metrics: a non-integer cut-off (ks=(2.5,))",
                   match=r"ks must be a non-empty sequence of integer cut-offs, got \(2.5,\); "
                         r"a non-integer cut-off such as 2.5 has no meaning"):
        ranking_metrics(**_args(ks=(2.5,)))
    with bad_input("ranking_metrics: chunk_size of 2.5",
                   match=r"chunk_size must be a positive integer \(users scored at once\), got "
                         r"2.5"):
        ranking_metrics(**_args(chunk_size=2.5))
    for ks in ((True,), ()):
        with pytest.raises(ValueError, match="ks must be a non-empty sequence of integer"):
            ranking_metrics(**_args(ks=ks))
    ints = ranking_metrics(**_args(ks=np.array([1, 2])))
    assert ints == ranking_metrics(**_args(ks=(1, 2)))


# ---- the two-stage top-K, the tuned default chunk and sharded embeddings -----------------------

@pytest.mark.parametrize("quantised", [False, True])
def test_two_stage_top_k_equals_lax_top_k(quantised):
    import jax.numpy as jnp
    from jax import lax
    from metafusion_jax.metrics import ranking
    rng = np.random.default_rng(11)
    scores = (rng.integers(-3, 4, (9, 256)) if quantised else rng.normal(size=(9, 256)))
    scores = scores.astype(np.float32)
    scores[0, :250] = -np.inf  # fewer than k finite candidates: -inf ties fill the list
    scores[1, ::7] = -np.inf
    for k, block in ((5, 8), (10, 4), (3, 16)):
        assert 256 // block >= 4 * k  # the two-stage path, not the fallback
        vals, ids = ranking.two_stage_top_k(jnp.asarray(scores), k, block=block)
        want_vals, want_ids = lax.top_k(jnp.asarray(scores), k)
        np.testing.assert_array_equal(vals, want_vals)
        finite = np.isfinite(np.asarray(want_vals))
        np.testing.assert_array_equal(np.asarray(ids)[finite], np.asarray(want_ids)[finite])
        # the ids of the -inf fill are real masked items of that row
        assert np.all(np.take_along_axis(scores, np.asarray(ids), 1)[~finite] == -np.inf)


@pytest.mark.parametrize("native", [True, False])
def test_two_stage_and_native_paths_match_reference(native, monkeypatch):
    from metafusion_jax.metrics import native_topk, ranking
    if native and not native_topk.available():
        pytest.skip("no C++ compiler: the native top-k is not built here")
    monkeypatch.setattr(native_topk, "available", lambda: native)
    ranking._round_fn.cache_clear()  # its jitted rounds were traced with the other top-k
    n_items = 4 * ranking.TOPK_BLOCK * 10 + 3  # >= 4 k blocks for k = 10; padded last block
    user_emb, item_emb, train, evals, exclude = random_case(13, n_users=23, n_items=n_items)
    got = ranking_metrics(user_emb, item_emb, train, evals, ks=(3, 10), exclude_pairs=exclude)
    want = reference_metrics(user_emb, item_emb, train, evals, (3, 10), exclude)
    ranking._round_fn.cache_clear()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_sharded_embeddings_equal_unsharded(fast_compile):
    import jax
    from jax.sharding import NamedSharding, PartitionSpec
    from metafusion_jax.metrics import ranking
    user_emb, item_emb, train, evals, exclude = random_case(14, n_users=56, n_items=144)
    want = ranking_metrics(user_emb, item_emb, train, evals, ks=(5, 20), exclude_pairs=exclude,
                           chunk_size=3)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rows = NamedSharding(mesh, PartitionSpec("data"))
    users = jax.device_put(user_emb, rows)
    assert ranking._user_mesh(users) == (mesh, "data")  # the user chunks go over 8 devices
    for items in (item_emb, jax.device_put(item_emb, rows)):  # items replicated or sharded
        got = ranking_metrics(users, items, train, evals, ks=(5, 20), exclude_pairs=exclude,
                              chunk_size=3)
        assert got == want
    # 56 users / 8 devices = 7 per device: the default chunk is capped there (one round)
    assert ranking_metrics(users, item_emb, train, evals, ks=(5, 20),
                           exclude_pairs=exclude) == want


def test_default_chunk_equals_explicit():
    user_emb, item_emb, train, evals, exclude = random_case(15, n_users=45)
    default = ranking_metrics(user_emb, item_emb, train, evals, ks=(2, 7), exclude_pairs=exclude)
    explicit = ranking_metrics(user_emb, item_emb, train, evals, ks=(2, 7), exclude_pairs=exclude,
                               chunk_size=6)
    for name, value in default.items():
        np.testing.assert_allclose(explicit[name], value, rtol=1e-6, err_msg=name)


def test_replicated_and_single_device_jax_arrays(fast_compile):
    import jax
    from jax.sharding import NamedSharding, PartitionSpec
    user_emb, item_emb, train, evals, _ = random_case(16, n_users=24, n_items=30)
    want = ranking_metrics(user_emb, item_emb, train, evals, ks=(3,))
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    replicated = jax.device_put(user_emb, NamedSharding(mesh, PartitionSpec()))
    on_dev3 = jax.device_put(item_emb, jax.devices()[3])
    assert ranking_metrics(replicated, on_dev3, train, evals, ks=(3,)) == want
    assert ranking_metrics(jax.device_put(user_emb, jax.devices()[5]), on_dev3, train, evals,
                           ks=(3,)) == want


def test_a_second_call_on_jax_arrays_compiles_nothing(caplog):
    # The trainer evaluates jax.Array embeddings every few epochs: the padding programs must be
    # cached per shape (they were re-jitted per call: 0.19 -> 0.035 s an eval at ML-100k size).
    import logging
    import jax
    user_emb, item_emb, train, evals, _ = random_case(17, n_users=29, n_items=33)
    args = (jax.numpy.asarray(user_emb), jax.numpy.asarray(item_emb), train, evals)
    first = ranking_metrics(*args, ks=(4,))
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        caplog.clear()
        assert ranking_metrics(*args, ks=(4,)) == first
    compiles = [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]
    assert compiles == []
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):  # the check can fail
        caplog.clear()
        ranking_metrics(*args, ks=(5,))
    assert any("ompil" in r.getMessage() for r in caplog.records)
