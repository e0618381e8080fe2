"""Tests of metammf/recommend.py: top-k from the best checkpoint, export, clear errors."""
import json
import os

import numpy as np
import pytest

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.data.rec import movielens
from metafusion_jax.metammf import recommend
from metafusion_jax.metammf import train
from reliability import bad_input

pytestmark = pytest.mark.usefixtures("fast_compile_module")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("rec_run"))
    config = metammf_configs.get_config("smoke")
    config.num_epochs = 2
    results = train.train_and_evaluate(config, workdir)
    return workdir, results, recommend.load_run(workdir)


def test_top_k_matches_a_numpy_reference_and_skips_train_items(finished_run):
    _, results, run = finished_run
    assert run.best_epoch == results["best_epoch"]
    assert run.user_emb.shape == (60, 8) and run.item_emb.shape == (40, 8)
    recs = recommend.recommend(run, [0, 5, 17], k=10)
    train_sets = {u: set(run.data.train[run.data.train[:, 0] == u, 1].tolist())
                  for u in (0, 5, 17)}
    for n, u in enumerate((0, 5, 17)):
        scores = run.user_emb[u] @ run.item_emb.T
        candidates = [i for i in np.argsort(-scores, kind="stable") if i not in train_sets[u]]
        assert recs.items[n].tolist() == candidates[:10]
        np.testing.assert_allclose(recs.scores[n], scores[candidates[:10]], rtol=1e-5)
        assert not set(recs.items[n].tolist()) & train_sets[u]
    val_items = {u: set(run.data.val[run.data.val[:, 0] == u, 1].tolist()) for u in (0, 5, 17)}
    with_val = recommend.recommend(run, [0, 5, 17], k=10, exclude_val=True)
    for n, u in enumerate((0, 5, 17)):
        assert not set(with_val.items[n].tolist()) & (train_sets[u] | val_items[u])
    text = recommend.format_recommendations(recs)
    assert text.splitlines()[0] == "user 0" and len(text.splitlines()) == 3 * 11


def test_export_writes_the_run_embeddings(finished_run, tmp_path):
    run = finished_run[2]
    path = recommend.export_embeddings(run, str(tmp_path / "sub" / "emb.npz"))
    with np.load(path) as f:
        np.testing.assert_array_equal(f["user_emb"], run.user_emb)
        np.testing.assert_array_equal(f["item_emb"], run.item_emb)


def test_unknown_users_and_k_out_of_range(finished_run):
    run = finished_run[2]
    with bad_input("recommend: a user id outside [0, U)", match="unknown user ids"):
        recommend.recommend(run, [0, 60], k=5)
    with bad_input("recommend: k above the number of candidate items", match="k must be an int"):
        recommend.recommend(run, [0], k=40)
    with bad_input("recommend: no users given", match="non-empty list of int user ids"):
        recommend.recommend(run, [], k=5)


def test_workdir_without_a_finished_run(tmp_path):
    with bad_input("recommend: a workdir without a finished run (no results.json)",
                   match="no finished MetaMMF run"):
        recommend.load_run(str(tmp_path))
    with open(tmp_path / "results.json", "w", encoding="utf-8") as f:
        json.dump({"metric": "mse", "config": "{}"}, f)
    with bad_input("recommend: a workdir of a Meta Fusion run", match="not a MetaMMF results"):
        recommend.load_run(str(tmp_path))


@pytest.mark.skipif(movielens.recbole_ml100k_dir() is None, reason="recbole wheel not installed")
def test_ml100k_labels_follow_the_loader_order():
    users, items = recommend.ml100k_labels()
    assert len(users) == 943 and len(items) == 1682
    assert users[:3] == ["1", "2", "3"]
    assert items[0].startswith("1: Toy Story") and items[1].startswith("2: ")
    assert os.path.isdir(movielens.recbole_ml100k_dir())
