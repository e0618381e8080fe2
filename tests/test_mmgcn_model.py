"""Tests for metammf/mmgcn_model.py: MMGCN against a dense NumPy formula of every layer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import mmgcn_model
from metafusion_jax.metammf import train
from reliability import bad_input

pytestmark = pytest.mark.usefixtures("fast_compile_module")

U, I, D = 6, 5, 3
SLICES = (("v", 0, 4), ("t", 4, 7))   # mlp_dim=3: v (4 wide) goes through the MLP, t stays raw
# User 5 has a single item (1); every node has an edge.
PAIRS = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 2], [2, 3], [3, 3], [3, 4], [4, 4],
                  [4, 0], [5, 1]], np.int32)


def _inputs(seed=0):
    feats = np.random.default_rng(seed).normal(size=(I, 7)).astype(np.float32)
    graph = jax.tree.map(jnp.asarray, graph_lib.make_bipartite_graph(PAIRS, U, I))
    return {"features": jnp.asarray(feats), "graph": graph}


def _model(slices=SLICES, **kw):
    return mmgcn_model.make_mmgcn(n_users=U, n_items=I, feature_dim=7, modality_slices=slices,
                                  dim=D, mlp_dim=3, **kw)


def _params(model, seed=1):
    """init's params with non-zero biases, so the test sees every term."""
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: a + jnp.asarray(rng.normal(size=a.shape) * 0.2, jnp.float32)
                        if a.ndim == 1 else a, params)


def _lrelu(x):
    return np.where(x > 0, x, 0.01 * x)


def np_mmgcn(params, feats, slices=SLICES):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    feats = np.asarray(feats, np.float64)
    adj = np.zeros((U + I, U + I))
    adj[PAIRS[:, 0], U + PAIRS[:, 1]] = adj[U + PAIRS[:, 1], PAIRS[:, 0]] = 1.0
    mean = adj / adj.sum(1, keepdims=True)
    rep = 0
    for name, a, b in slices:
        m = p["modalities"][name]
        items = feats[:, a:b]
        if "mlp" in m:
            items = items @ m["mlp"]["W"] + m["mlp"]["b"]
        x = np.concatenate([m["pref"], items])
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        for layer in m["layers"]:
            h = _lrelu(mean @ x @ layer["Wc"])
            x_hat = _lrelu(x @ layer["Wl"] + layer["bl"]) + p["id"]
            if "bg" in layer:
                x = _lrelu(np.concatenate([h, x_hat], 1) @ layer["Wg"] + layer["bg"])
            else:
                x = _lrelu(h @ layer["Wg"] + x_hat)
        rep = rep + x
    return rep[:U], rep[U:]


@pytest.mark.parametrize("concat", [True, False])
def test_embed_matches_dense_formula(concat):
    model = _model(concat=concat, n_layers=3)
    params = _params(model)
    inputs = _inputs()
    users, items = jax.jit(model.embed, static_argnums=3)(params, inputs, jax.random.key(0),
                                                          True)
    ref_u, ref_i = np_mmgcn(params, inputs["features"])
    np.testing.assert_allclose(users, ref_u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items, ref_i, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("concat", [True, False])
def test_layer_shapes(concat):
    params = _model(concat=concat, n_layers=3).init(jax.random.key(0))
    v, t = params["modalities"]["v"], params["modalities"]["t"]
    assert v["mlp"]["W"].shape == (4, 3) and "mlp" not in t   # c_v = mlp_dim, c_t = D_t
    assert params["id"].shape == (U + I, D)
    for mod, c in ((v, 3), (t, 3)):
        assert mod["pref"].shape == (U, c) and len(mod["layers"]) == 3
        for n, layer in enumerate(mod["layers"]):
            width = c if n == 0 else D
            assert layer["Wc"].shape == (width, width) and layer["Wl"].shape == (width, D)
            assert layer["Wg"].shape == ((width + D) if concat else width, D)
            assert ("bg" in layer) == concat


def test_modalities_are_summed_towers():
    both = _model()
    params = _params(both)
    inputs = _inputs()
    users, items = both.embed(params, inputs, jax.random.key(0), True)
    parts = []
    for name, a, b in SLICES:
        single = _model(slices=((name, a, b),))
        sub = {"id": params["id"], "modalities": {name: params["modalities"][name]}}
        parts.append(single.embed(sub, inputs, jax.random.key(0), True))
    np.testing.assert_allclose(users, parts[0][0] + parts[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(items, parts[0][1] + parts[1][1], rtol=1e-5, atol=1e-6)


def test_single_item_user_aggregates_exactly_that_item():
    inputs = _inputs()
    x = jnp.asarray(np.random.default_rng(2).normal(size=(U + I, 4)), jnp.float32)
    agg = graph_lib.mean_neighbours(x, inputs["graph"])   # M X, the aggregation's input
    np.testing.assert_allclose(agg[5], x[U + 1], rtol=1e-6)


def test_preferences_and_id_embeddings_are_trained():
    model = _model()
    params = _params(model)
    inputs = _inputs()

    def score(p):
        u, i = model.embed(p, inputs, jax.random.key(0), True)
        return jnp.sum(u[:3] @ i.T)

    grads = jax.jit(jax.grad(score))(params)
    assert float(jnp.abs(grads["id"]).max()) > 1e-6
    for name in ("v", "t"):
        assert float(jnp.abs(grads["modalities"][name]["pref"]).max()) > 1e-6
    assert float(jnp.abs(grads["modalities"]["v"]["mlp"]["W"]).max()) > 1e-6


def test_bad_options_raise():
    with bad_input("MMGCN: concat not a bool", match="concat must be True"):
        _model(concat="False")
    with bad_input("MMGCN: n_layers < 1", match="n_layers must be >= 1"):
        _model(n_layers=0)
    with bad_input("MMGCN: a modality slice outside the feature width", match="modality_slices"):
        _model(slices=(("v", 0, 9),))


@pytest.mark.slow  # ~10 s idle: compile of the whole train step (run with -m slow)
def test_trainer_runs_mmgcn(tmp_path, fast_compile):
    config = metammf_configs.get_config("smoke,model=mmgcn")
    config.num_epochs = 1
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["best_epoch"] == 1 and 0.0 <= results["test"]["recall@20"] <= 1.0
