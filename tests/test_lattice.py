"""Tests for metammf/lattice.py: LATTICE against a dense, step-by-step NumPy formula."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import lattice
from metafusion_jax.metammf import train
from reliability import bad_input

pytestmark = pytest.mark.usefixtures("fast_compile_module")

# The spec's test case: 6 users x 5 items, every node has an edge, X_v 5x4 and X_t 5x3, k = 2.
U, I, K_NN, D = 6, 5, 2, 3
SLICES = (("v", 0, 4), ("t", 4, 7))
PAIRS = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 2], [2, 3], [3, 3], [3, 4], [4, 4],
                  [4, 0], [5, 1], [5, 3]], np.int32)


def _inputs(seed=0):
    feats = np.random.default_rng(seed).normal(size=(I, 7)).astype(np.float32)
    graph = jax.tree.map(jnp.asarray, graph_lib.make_bipartite_graph(PAIRS, U, I))
    return {"features": jnp.asarray(feats), "graph": graph}


def _adj():
    adj = np.zeros((U + I, U + I))
    adj[PAIRS[:, 0], U + PAIRS[:, 1]] = adj[U + PAIRS[:, 1], PAIRS[:, 0]] = 1.0
    return adj


def np_cos(x):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit @ unit.T


def np_topk(s, k):
    out = np.zeros_like(s)
    for i in range(len(s)):
        top = np.argsort(-s[i], kind="stable")[:k]
        out[i, top] = s[i, top]
    return out


def np_rnorm(s):
    r = s.sum(1)
    d = np.where(r > 0, 1 / np.sqrt(np.where(r > 0, r, 1)), 0)
    return d[:, None] * s * d[None, :]


def np_lattice(p, feats, lam, n_layers=2, n_item_layers=1):
    """Steps 1-9 of the module docstring, dense float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    feats = np.asarray(feats, np.float64)
    alpha = np.exp(p["modality_logits"]) / np.exp(p["modality_logits"]).sum()
    s0, s_hat = [], []
    for name, a, b in SLICES:
        s0.append(np_rnorm(np_topk(np_cos(feats[:, a:b]), K_NN)))
        f = (feats[:, a:b] + p["feat_delta"][name]) @ p["proj"][name]["W"] + p["proj"][name]["b"]
        s_hat.append(np_topk(np_cos(f), K_NN))
    a_l = np_rnorm(sum(w * s for w, s in zip(alpha, s_hat)))
    a_0 = sum(w * s for w, s in zip(alpha, s0))
    a_mat = (1 - lam) * a_l + lam * a_0
    h = p["item"]
    for _ in range(n_item_layers):
        h = a_mat @ h
    adj = _adj() + np.eye(U + I)
    walk = adj / adj.sum(1, keepdims=True)
    e = np.concatenate([p["user"], p["item"]])
    layers_, x = [e], e
    for _ in range(n_layers):
        x = walk @ x
        layers_.append(x)
    z = np.mean(layers_, axis=0)
    return z[:U], z[U:] + h / np.linalg.norm(h, axis=1, keepdims=True), a_0


def _model(**kw):
    return lattice.make_lattice(n_users=U, n_items=I, feature_dim=7, modality_slices=SLICES,
                                dim=D, feat_embed_dim=4, knn_k=K_NN, **kw)


def _perturbed_params(model, seed=1):
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(seed)
    params["modality_logits"] = jnp.array([0.3, -0.4])
    params["feat_delta"] = {n: jnp.asarray(rng.normal(size=v.shape) * 0.3, jnp.float32)
                            for n, v in params["feat_delta"].items()}
    return params


@pytest.mark.parametrize("lam", [0.9, 0.3])
def test_embed_matches_dense_step_by_step_formula(lam):
    model = _model(lambda_coeff=lam)
    params = _perturbed_params(model)
    inputs = _inputs()
    extra = model.prepare_inputs(np.asarray(inputs["features"]), SLICES, inputs["graph"])
    users, items = jax.jit(model.embed, static_argnums=3)(params, {**inputs, **extra},
                                                          jax.random.key(0), True)
    ref_u, ref_i, _ = np_lattice(params, inputs["features"], lam)
    np.testing.assert_allclose(users, ref_u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items, ref_i, rtol=1e-4, atol=1e-5)
    # Without the prepared S0 the same graph is computed inside jit.
    _, items_fallback = jax.jit(model.embed, static_argnums=3)(params, inputs,
                                                               jax.random.key(0), False)
    np.testing.assert_allclose(items_fallback, items, rtol=1e-5, atol=1e-6)


def test_initial_graph_at_init_is_the_uniform_mix():
    model = _model()
    params = model.init(jax.random.key(0))
    np.testing.assert_allclose(jax.nn.softmax(params["modality_logits"]), [0.5, 0.5])
    inputs = _inputs()
    extra = model.prepare_inputs(np.asarray(inputs["features"]), SLICES, inputs["graph"])
    assert extra["lattice_s0_idx"].shape == (2, I, K_NN)
    dense = np.zeros((I, I))
    for m in range(2):
        np.add.at(dense, (np.repeat(np.arange(I), K_NN), extra["lattice_s0_idx"][m].ravel()),
                  0.5 * extra["lattice_s0_w"][m].ravel())
    _, _, a_0 = np_lattice(params, inputs["features"], 0.9)
    np.testing.assert_allclose(dense, a_0, rtol=1e-5, atol=1e-6)
    # Each topk row keeps exactly k entries, the diagonal among them.
    for m in range(2):
        for i in range(I):
            assert i in extra["lattice_s0_idx"][m, i]


def test_user_item_graph_is_random_walk_with_self_loops():
    inputs = _inputs()
    ones = jnp.ones((U + I, 2))
    np.testing.assert_allclose(lattice.random_walk_propagate(ones, inputs["graph"]), ones,
                               rtol=1e-6)  # rows of D^-1 (A + I) sum to 1
    x = np.random.default_rng(3).normal(size=(U + I, 2))
    adj = _adj() + np.eye(U + I)
    np.testing.assert_allclose(lattice.random_walk_propagate(jnp.asarray(x, jnp.float32),
                                                             inputs["graph"]),
                               adj @ x / adj.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_item_part_has_unit_norm_rows_and_users_are_lightgcn_walks():
    model = _model(lambda_coeff=0.5)
    params = _perturbed_params(model)
    users, items = model.embed(params, _inputs(), jax.random.key(0), True)
    adj = _adj() + np.eye(U + I)
    walk = adj / adj.sum(1, keepdims=True)
    e = np.concatenate([params["user"], params["item"]]).astype(np.float64)
    z = (e + walk @ e + walk @ walk @ e) / 3
    np.testing.assert_allclose(users, z[:U], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(items) - z[U:], axis=1), 1.0,
                               rtol=1e-5)


def _score_grads(model, params, inputs):
    def score(p):
        u, i = model.embed(p, inputs, jax.random.key(0), True)
        return jnp.sum(u[:3] @ i.T)
    return jax.jit(jax.grad(score))(params)


def test_learned_graph_gets_gradients_unless_lambda_is_one():
    inputs = _inputs()
    for lam, expect in ((0.5, True), (1.0, False)):
        model = _model(lambda_coeff=lam)
        grads = _score_grads(model, _perturbed_params(model), inputs)
        for name in ("v", "t"):
            g_w = float(jnp.abs(grads["proj"][name]["W"]).max())
            g_x = float(jnp.abs(grads["feat_delta"][name]).max())
            assert (g_w > 1e-6) == expect and (g_x > 1e-6) == expect, (lam, name, g_w, g_x)
        assert float(jnp.abs(grads["modality_logits"]).max()) > 1e-6  # α weights A_0 too


def test_bad_options_raise():
    with bad_input("LATTICE: lambda_coeff outside [0, 1]", match="lambda_coeff"):
        _model(lambda_coeff=1.5)
    with bad_input("LATTICE: knn_k < 1", match="knn_k must be >= 1"):
        lattice.make_lattice(n_users=U, n_items=I, feature_dim=7, knn_k=0)
    with bad_input("LATTICE: a modality slice outside the feature width", match="modality_slices"):
        lattice.make_lattice(n_users=U, n_items=I, feature_dim=7, modality_slices=(("v", 0, 9),))


@pytest.mark.slow  # ~10 s idle: compile of the whole train step (run with -m slow)
def test_trainer_runs_lattice(tmp_path, fast_compile):
    config = metammf_configs.get_config("smoke,model=lattice")
    config.num_epochs = 1
    config.model.lattice.knn_k = 3
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["best_epoch"] == 1 and 0.0 <= results["test"]["recall@20"] <= 1.0
