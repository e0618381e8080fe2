"""Tests of the cold-start protocol: interactions.cold_item_split, sampler exclusion,
metammf/coldstart.py metrics and the trainer's results["cold"]."""
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.data.rec import interactions
from metafusion_jax.data.rec import synthetic as synthetic_rec
from metafusion_jax.metammf import coldstart
from metafusion_jax.metammf import sampling
from metafusion_jax.metammf import train
from reliability import bad_input


def tiny_data():
    """6 users, 10 items; user 5's only train item is item 9."""
    rng = np.random.default_rng(0)
    train_p, val_p, test_p = [], [], []
    for u in range(5):
        items = rng.permutation(9)[:6]
        train_p += [(u, i) for i in items[:4]]
        val_p.append((u, items[4]))
        test_p.append((u, items[5]))
    train_p.append((5, 9))
    val_p.append((5, 0))
    test_p.append((5, 1))
    feats = {"a": rng.normal(size=(10, 3)).astype(np.float32)}
    return interactions.InteractionData.from_pairs(
        n_users=6, n_items=10, train=np.array(train_p), val=np.array(val_p),
        test=np.array(test_p), features=feats, name="tiny")


def test_cold_split_holds_out_items_with_all_their_pairs():
    data = tiny_data()
    split = interactions.cold_item_split(data, 0.3, seed=1)
    cold = set(split.cold_items.tolist())
    assert len(cold) == 3  # round(0.3 * 10)
    assert 9 not in cold  # user 5's only train item stays warm
    every = np.concatenate([data.train, data.val, data.test])
    expected = sorted(map(tuple, every[np.isin(every[:, 1], list(cold))].tolist()))
    assert sorted(map(tuple, split.cold_pairs.tolist())) == expected
    for name in ("train", "val", "test"):
        warm = getattr(split.data, name)
        assert not np.isin(warm[:, 1], list(cold)).any()
        original = getattr(data, name)
        assert len(warm) == int((~np.isin(original[:, 1], list(cold))).sum())
    assert np.bincount(split.data.train[:, 0], minlength=6).min() >= 1
    # deterministic per seed, different across seeds
    again = interactions.cold_item_split(data, 0.3, seed=1)
    np.testing.assert_array_equal(again.cold_items, split.cold_items)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, True])
def test_cold_split_rejects_a_bad_fraction(fraction):
    with bad_input("cold-start split: a fraction outside (0, 1)", match="fraction must be"):
        interactions.cold_item_split(tiny_data(), fraction)


def test_cold_split_refuses_when_every_item_is_someones_last_train_item():
    data = interactions.InteractionData.from_pairs(
        n_users=2, n_items=4, train=np.array([[0, 0], [1, 1]]), val=np.array([[0, 2]]),
        test=np.array([[1, 3]]), features={"a": np.ones((4, 2), np.float32)})
    # items 2 and 3 could go, but then val or test would be empty; items 0, 1 are last items
    with bad_input("cold-start split: no item can be held out / a warm split empties",
                   match="cold_item_split"):
        interactions.cold_item_split(data, 0.5, seed=0)


def test_sampler_never_draws_excluded_items():
    data = tiny_data()
    split = interactions.cold_item_split(data, 0.3, seed=1)
    sampler = sampling.make_bpr_sampler(split.data.train, n_users=6, n_items=10,
                                        num_negatives=8, batch_size=7,
                                        exclude_items=split.cold_items)
    train_codes = set(interactions.pair_codes(split.data.train, 10).tolist())
    seen = set()
    for epoch in range(1, 6):
        b = sampler.epoch(jax.random.key(0), epoch)
        real = b.weight > 0
        neg, users = b.neg[real], b.users[real]
        assert not np.isin(neg, split.cold_items).any()
        assert not any(u * 10 + n in train_codes for u, row in zip(users, neg) for n in row)
        seen |= set(neg.ravel().tolist())
    # every warm non-train item of some user is reachable
    assert seen == set(range(10)) - set(split.cold_items.tolist())
    triples = sampling.static_triples(split.data.train, n_users=6, n_items=10,
                                      key=jax.random.key(1), num_negatives=3,
                                      exclude_items=split.cold_items)
    assert not np.isin(triples.neg, split.cold_items).any()


def test_sampler_rejects_bad_exclude_items():
    with bad_input("BPR sampler: exclude_items outside [0, I)", match="exclude_items: item ids"):
        sampling.make_bpr_sampler(np.array([[0, 0]]), n_users=1, n_items=3, num_negatives=1,
                                  batch_size=2, exclude_items=np.array([3]))
    with bad_input("BPR sampler: exclude_items leave a user no negative",
                   match="possible negatives"):
        sampling.make_bpr_sampler(np.array([[0, 0]]), n_users=1, n_items=3, num_negatives=1,
                                  batch_size=2, exclude_items=np.array([1, 2]))


def reference_cold_recall_ndcg(user_emb, item_emb, cold_items, cold_pairs, k):
    """Python-loop reference: per user, rank the cold items by score, recall/ndcg at k."""
    recalls, ndcgs = [], []
    for u in sorted(set(cold_pairs[:, 0].tolist())):
        rel = set(cold_pairs[cold_pairs[:, 0] == u, 1].tolist())
        scores = [(-float(user_emb[u] @ item_emb[i]), i) for i in cold_items]
        ranked = [i for _, i in sorted(scores)][:k]
        hits = [1.0 if i in rel else 0.0 for i in ranked]
        recalls.append(sum(hits) / len(rel))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        ndcgs.append(dcg / idcg)
    return np.mean(recalls), np.mean(ndcgs)


def test_cold_metrics_match_a_python_loop():
    rng = np.random.default_rng(3)
    user_emb = rng.normal(size=(7, 4)).astype(np.float32)
    item_emb = rng.normal(size=(30, 4)).astype(np.float32)
    cold_items = np.array([1, 4, 5, 8, 11, 13, 17, 20, 22, 25, 27, 29])
    cold_pairs = np.array([(u, i) for u in range(5) for i in rng.choice(cold_items, 3, False)])
    out = coldstart.cold_metrics(user_emb, item_emb, cold_items, cold_pairs, ks=(5, 10, 20))
    assert "recall@20" not in out  # 20 > 12 cold items: dropped
    assert out["n_items"] == 12 and out["n_users"] == 5
    for k in (5, 10):
        recall, ndcg = reference_cold_recall_ndcg(user_emb, item_emb, cold_items, cold_pairs, k)
        assert out[f"recall@{k}"] == pytest.approx(recall, abs=1e-6)
        assert out[f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-6)


def test_cold_metrics_reject_pairs_of_warm_items_and_too_few_items():
    emb = np.ones((2, 2), np.float32)
    with bad_input("cold-start metrics: a cold pair names a warm item", match="not in cold_items"):
        coldstart.cold_metrics(emb, np.ones((5, 2), np.float32), [1, 2], np.array([[0, 3]]))
    with bad_input("cold-start metrics: fewer cold items than the smallest cut-off",
                   match="fewer than the smallest cut-off"):
        coldstart.cold_metrics(emb, np.ones((5, 2), np.float32), [1, 2], np.array([[0, 1]]))


def test_zero_item_ids_zeroes_only_the_cold_rows():
    params = {"item_id": jnp.ones((5, 3)), "user": jnp.ones((2, 3))}
    out = coldstart.zero_item_ids(params, "metammf", [1, 3])
    np.testing.assert_array_equal(np.asarray(out["item_id"]).sum(axis=1), [3, 0, 3, 0, 3])
    assert out["user"] is params["user"] and float(params["item_id"].sum()) == 15.0
    vbpr = {"gamma_item": jnp.ones((4, 2)), "beta_item": jnp.ones((4, 1)), "E": jnp.ones((3, 2))}
    out = coldstart.zero_item_ids(vbpr, "vbpr", [0])
    assert float(out["gamma_item"][0].sum()) == 0 and float(out["beta_item"][0, 0]) == 0
    assert float(out["E"].sum()) == 6


def test_a_model_without_content_is_refused():
    with bad_input("cold-start: a model that cannot rank unseen items (LightGCN)",
                   match="ranks items from their content"):
        coldstart.check_model("lightgcn")


def test_cold_start_run_reports_cold_metrics_run_info_and_figures(tmp_path, fast_compile,
                                                                  monkeypatch):
    # One end-to-end run checks all that the trainer adds at its end (cold-start metrics,
    # run info, figures): each such run costs CI tens of seconds.
    config = metammf_configs.get_config("smoke")
    config.data.cold_items = 0.5
    config.num_epochs = 2
    config.figures = True
    excluded, real_evaluate = [], train._evaluate

    def spy(embed_eval, params, inputs, data, eval_pairs, exclude_pairs, chunk_size):
        excluded.append(set(map(tuple, np.asarray(exclude_pairs).tolist())))
        return real_evaluate(embed_eval, params, inputs, data, eval_pairs, exclude_pairs,
                             chunk_size)

    monkeypatch.setattr(train, "_evaluate", spy)
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["figures"] == {"training_curves": "figures/training_curves.png",
                                  "modality": "figures/modality.png"}
    assert all(os.path.getsize(tmp_path / p) > 15_000 for p in results["figures"].values())
    assert set(results["modality"]) == {"mean_share", "agreement", "relative_agreement"}
    assert 0.0 <= results["modality"]["agreement"] <= 1.0
    assert results["run_info"]["device_count"] == 8
    with open(tmp_path / "results.json", encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["cold"] == results["cold"] and saved["modality"] == results["modality"]
    tags = {k for row in open(tmp_path / "metrics.jsonl", encoding="utf-8")
            for k in json.loads(row)}
    assert {f"cold/{k}" for k in results["cold"] if "@" in k} <= tags  # tag = JSON key path
    data, _ = synthetic_rec.make_synthetic_microvideo(60, 40, 600, modality_dims=dict(
        config.data.modality_dims), seed=0)
    split = interactions.cold_item_split(data, 0.5, seed=0)
    cold = results["cold"]
    assert cold["n_items"] == len(split.cold_items) == 20
    # Warm val and test rank the warm items only: every (user, cold item) pair is excluded.
    every_cold = {(u, int(i)) for u in range(60) for i in split.cold_items}
    assert len(excluded) == 3 and all(every_cold <= e for e in excluded)
    assert {tuple(p) for p in split.data.val.tolist()} <= excluded[-1]  # test also drops val
    assert cold["n_users"] == len(np.unique(split.cold_pairs[:, 0]))
    assert 0.0 < cold["recall@10"] <= cold["recall@20"] <= 1.0
    assert cold["recall@20"] == pytest.approx(1.0)  # 20 candidates, k = 20: all found
    assert results["dataset"] == "synthetic_microvideo"
