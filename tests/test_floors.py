"""Tests for metammf/floors.py: popularity and random rankings, also through the trainer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.metammf import floors
from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import inputs as inputs_lib
from metafusion_jax.metammf import train
from metafusion_jax.metrics import ranking
from reliability import bad_input

U, I = 6, 5
PAIRS = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 1], [2, 3], [3, 1], [3, 4], [4, 4],
                  [5, 1]], np.int32)


def _inputs():
    graph = jax.tree.map(jnp.asarray, graph_lib.make_bipartite_graph(PAIRS, U, I))
    return {"features": jnp.zeros((I, 2), jnp.float32), "graph": graph}


def test_popularity_scores_are_train_counts_for_every_user():
    model = floors.make_popularity(n_users=U, n_items=I)
    users, items = model.embed(model.init(jax.random.key(0)), _inputs(), jax.random.key(0), True)
    scores = np.asarray(users @ items.T)
    counts = [1, 5, 1, 1, 2]  # hand count of PAIRS[:, 1]
    np.testing.assert_array_equal(scores, np.tile(counts, (U, 1)))


def test_random_scores_are_fixed_by_the_seed_and_ignore_the_data():
    model = floors.make_random(n_users=U, n_items=I, dim=8, seed=3)
    params = model.init(jax.random.key(0))
    u, i = model.embed(params, _inputs(), jax.random.key(1), True)
    a = np.asarray(u @ i.T)
    other_inputs = dict(_inputs(), features=jnp.ones((I, 2), jnp.float32))
    u, i = model.embed(params, other_inputs, jax.random.key(2), False)
    np.testing.assert_array_equal(a, np.asarray(u @ i.T))
    u2, i2 = floors.make_random(n_users=U, n_items=I, dim=8, seed=4).embed(
        params, _inputs(), jax.random.key(1), True)
    assert not np.allclose(a, np.asarray(u2 @ i2.T))
    # Per user, the item scores are i.i.d.: users do not share one ranking.
    assert len({tuple(np.argsort(-row)) for row in a}) > 1


def test_floors_have_zero_gradients():
    for model in (floors.make_popularity(n_users=U, n_items=I),
                  floors.make_random(n_users=U, n_items=I, dim=4)):
        params = model.init(jax.random.key(0))

        def score(p, model=model):
            u, i = model.embed(p, _inputs(), jax.random.key(0), True)
            return jnp.sum(u @ i.T)

        assert float(jax.grad(score)(params)["dummy"]) == 0.0


def test_bad_random_seed_raises():
    with bad_input("random floor: seed not an int", match="seed must be an int"):
        floors.make_random(n_users=U, n_items=I, seed=1.5)


@pytest.mark.parametrize("name", ["popularity", "random"])
def test_trainer_runs_the_floor_and_leaves_it_untrained(name, tmp_path, fast_compile):
    config = metammf_configs.get_config(f"smoke,model={name}")
    config.num_epochs, config.eval_every = 1, 1
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["best_epoch"] == 1
    # Test metrics are those of the untrained scores, computed here directly.
    data, model, model_inputs = inputs_lib.build(config)
    users, items = model.embed(model.init(jax.random.key(0)), model_inputs, jax.random.key(0),
                               False)
    direct = ranking.ranking_metrics(users, items, data.train, data.test, ks=(10, 20),
                                     exclude_pairs=data.val)
    for key in ("recall@20", "ndcg@20", "recall@10"):
        assert results["test"][key] == pytest.approx(direct[key], abs=1e-6)
    if name == "popularity":
        counts = np.bincount(data.train[:, 1], minlength=data.n_items)
        np.testing.assert_allclose(np.asarray(items)[:, 0], counts)
