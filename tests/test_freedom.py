"""Tests for metammf/freedom.py: FREEDOM against dense formulas, pruning against its law."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.metammf import freedom
from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import train
from reliability import bad_input

pytestmark = pytest.mark.usefixtures("fast_compile_module")

U, I, K_NN, D, EPS = 6, 5, 2, 3, 1e-7
SLICES = (("v", 0, 4), ("t", 4, 7))
PAIRS = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 2], [2, 3], [3, 3], [3, 4], [4, 4],
                  [4, 0], [5, 1], [5, 3]], np.int32)
E = len(PAIRS)


def _inputs(seed=0):
    feats = np.random.default_rng(seed).normal(size=(I, 7)).astype(np.float32)
    graph = jax.tree.map(jnp.asarray, graph_lib.make_bipartite_graph(PAIRS, U, I))
    return {"features": jnp.asarray(feats), "graph": graph}


def _model(**kw):
    return freedom.make_freedom(n_users=U, n_items=I, feature_dim=7, modality_slices=SLICES,
                                dim=D, knn_k=K_NN, **kw)


def np_item_graph(feats, weights):
    s = np.zeros((I, I))
    for w, (_, a, b) in zip(weights, SLICES):
        x = feats[:, a:b] / np.linalg.norm(feats[:, a:b], axis=1, keepdims=True)
        sim = x @ x.T
        for i in range(I):
            s[i, np.argsort(-sim[i], kind="stable")[:K_NN]] += w / (K_NN + EPS)
    return s


def np_ui_matrix(keep, pairs=PAIRS):
    """Â (keep = all ones) or Â_ρ over the kept edges of `pairs`, dense [U + I, U + I]."""
    adj = np.zeros((U + I, U + I))
    kept = pairs[np.asarray(keep) > 0]
    adj[kept[:, 0], U + kept[:, 1]] = adj[U + kept[:, 1], kept[:, 0]] = 1.0
    d = adj.sum(1) + EPS
    return adj / np.sqrt(d[:, None] * d[None, :])


def np_freedom(params, feats, keep, weights=(0.5, 0.5), pairs=PAIRS):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    a_hat = np_ui_matrix(keep, pairs)
    e = np.concatenate([p["user"], p["item"]])
    z = (e + a_hat @ e + a_hat @ a_hat @ e) / 3
    h = np_item_graph(np.asarray(feats, np.float64), weights) @ p["item"]
    return z[:U], z[U:] + h


def test_eval_embed_matches_dense_formula_with_the_full_graph():
    model = _model(dropout=0.5, modality_weights=(("t", 3.0), ("v", 1.0)))
    params = model.init(jax.random.key(0))
    inputs = _inputs()
    extra = model.prepare_inputs(np.asarray(inputs["features"]), SLICES, inputs["graph"])
    users, items = jax.jit(model.embed, static_argnums=3)(params, {**inputs, **extra},
                                                          jax.random.key(5), False)
    ref_u, ref_i = np_freedom(params, inputs["features"], np.ones(E), weights=(0.25, 0.75))
    np.testing.assert_allclose(users, ref_u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items, ref_i, rtol=1e-4, atol=1e-5)
    # Without the prepared arrays, embed finds the same kNN graph and edges in jit.
    fallback = jax.jit(model.embed, static_argnums=3)(params, inputs, jax.random.key(5), False)
    np.testing.assert_allclose(fallback[1], items, rtol=1e-6)


def test_train_embed_uses_the_pruned_renormalised_graph():
    rho = 0.5
    model = _model(dropout=rho)
    params = model.init(jax.random.key(0))
    inputs = _inputs()
    key = jax.random.key(7)
    users, items = jax.jit(model.embed, static_argnums=3)(params, inputs, key, True)
    e_u, e_i = freedom.user_item_edges(inputs["graph"], U)
    keep = freedom.prune_mask(key, e_u, e_i, U, I, rho)
    assert set(np.unique(keep)) <= {0.0, 1.0} and int(keep.sum()) == int(np.floor(E * rho))
    pairs = np.stack([np.asarray(e_u), np.asarray(e_i)], 1)  # the order of keep
    ref_u, ref_i = np_freedom(params, inputs["features"], keep, pairs=pairs)
    np.testing.assert_allclose(users, ref_u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items, ref_i, rtol=1e-4, atol=1e-5)
    a_rho = np_ui_matrix(keep, pairs)
    np.testing.assert_allclose(a_rho, a_rho.T)  # symmetric
    # Another step's key draws another graph; rho = 0 trains on the full graph.
    other = jax.jit(model.embed, static_argnums=3)(params, inputs, jax.random.key(8), True)
    assert not np.allclose(other[0], users)
    full = _model(dropout=0.0)
    np.testing.assert_allclose(full.embed(params, inputs, key, True)[0],
                               full.embed(params, inputs, key, False)[0], rtol=1e-6)


def test_pruning_draws_edges_in_proportion_to_inverse_sqrt_degrees():
    inputs = _inputs()
    e_u, e_i = freedom.user_item_edges(inputs["graph"], U)
    rho = 1.0 - 1.5 / E  # m = floor(1.5) = 1 edge per draw
    draws = jax.jit(jax.vmap(lambda k: freedom.prune_mask(k, e_u, e_i, U, I, rho)))(
        jax.random.split(jax.random.key(0), 10_000))
    assert np.all(np.asarray(draws).sum(1) == 1)
    deg_u = np.bincount(PAIRS[:, 0], minlength=U)
    deg_i = np.bincount(PAIRS[:, 1], minlength=I)
    e_u, e_i = np.asarray(e_u), np.asarray(e_i)
    p = 1 / np.sqrt((deg_u[e_u] + EPS) * (deg_i[e_i] + EPS))
    np.testing.assert_allclose(np.asarray(draws).mean(0), p / p.sum(), atol=0.015)


def test_user_item_edges_on_host_and_traced_are_the_train_pairs():
    graph = graph_lib.make_bipartite_graph(PAIRS, U, I)
    host = freedom.user_item_edges(graph, U)
    traced = jax.jit(lambda g: freedom.user_item_edges(g, U))(jax.tree.map(jnp.asarray, graph))
    got = sorted(zip(host[0].tolist(), host[1].tolist()))
    assert got == sorted(map(tuple, PAIRS.tolist()))
    np.testing.assert_array_equal(host[0], traced[0])
    np.testing.assert_array_equal(host[1], traced[1])


def test_item_graph_rows_are_knn_means():
    feats = np.asarray(_inputs()["features"], np.float64)
    s = np_item_graph(feats, (1.0, 0.0))
    assert np.all((s > 0).sum(1) == K_NN) and np.all(np.diag(s) > 0)
    np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-6)
    # The frozen graph is built from the features only: no parameter feeds it.
    model = _model()
    assert set(model.init(jax.random.key(0))) == {"user", "item"}


def test_bad_options_raise():
    with bad_input("FREEDOM: dropout (edge pruning ratio) >= 1", match="dropout"):
        _model(dropout=1.0)
    with bad_input("FREEDOM: modality_weights naming an unknown modality",
                   match="modality_weights must give"):
        _model(modality_weights=(("image", 1.0),))
    with bad_input("FREEDOM: modality_weights all zero", match="modality_weights must give"):
        _model(modality_weights=(("v", 0.0), ("t", 0.0)))


@pytest.mark.slow  # ~10 s idle: compile of the whole train step (run with -m slow)
def test_trainer_runs_freedom(tmp_path, fast_compile):
    config = metammf_configs.get_config("smoke,model=freedom")
    config.num_epochs = 1
    config.model.freedom.knn_k = 3
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["best_epoch"] == 1 and 0.0 <= results["test"]["recall@20"] <= 1.0
