"""Tests for metammf/models.py: every model in MODELS, MetaMMF composition, gradients, dropout."""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import layers
from metafusion_jax.metammf import losses
from metafusion_jax.metammf import models
from reliability import bad_input


pytestmark = pytest.mark.usefixtures("fast_compile_module")

U, I, F = 9, 7, 10
SLICES = (("v", 0, 6), ("t", 6, 10))
SMALL = dict(meta_hidden=8, fusion_dims=(6, 4), id_dim=3, user_dim=7, rank=2)
DATA_ARGS = ("n_users", "n_items", "feature_dim", "modality_slices")


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.random((U, I)) < 0.4
    mask[np.arange(U), np.arange(U) % I] = True
    pairs = np.argwhere(mask).astype(np.int32)
    graph = jax.tree_util.tree_map(jnp.asarray, graph_lib.make_bipartite_graph(pairs, U, I))
    return {"features": jnp.asarray(rng.normal(size=(I, F)), jnp.float32), "graph": graph}


def _make(name, **kw):
    spec = models.MODELS[name]
    if not spec.config_group:
        kw = {**{k: v for k, v in SMALL.items() if k in spec.options}, **kw}
    return spec.factory(n_users=U, n_items=I, feature_dim=F, modality_slices=SLICES, **kw)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_spec_options_are_exactly_the_factory_keyword_arguments(name):
    spec = models.MODELS[name]
    params = inspect.signature(spec.factory).parameters
    assert all(p.kind == p.KEYWORD_ONLY for p in params.values())
    assert set(params) == set(DATA_ARGS) | set(spec.options)
    assert spec.config_group in ("", name)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_prepare_inputs(name):
    model = _make(name)
    inputs = _inputs()
    extra = model.prepare_inputs(np.asarray(inputs["features"]), SLICES, inputs["graph"])
    n_edges = int(inputs["graph"].src.shape[0]) // 2
    expected = {  # knn_k = 10 is capped at I = 7
        "lattice": {"lattice_s0_idx": (2, I, 7), "lattice_s0_w": (2, I, 7)},
        "freedom": {"freedom_knn_idx": (2, I, 7), "freedom_users": (n_edges,),
                    "freedom_items": (n_edges,)},
    }.get(name, {})
    assert {k: np.shape(v) for k, v in extra.items()} == expected


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_embeds_under_jit(name):
    model = _make(name)
    params = model.init(jax.random.key(0))
    embed = jax.jit(model.embed, static_argnames="train")
    users, items = embed(params, _inputs(), jax.random.key(1), train=True)
    assert users.shape[0] == U and items.shape[0] == I and users.shape[1] == items.shape[1]
    assert np.all(np.isfinite(users)) and np.all(np.isfinite(items))
    assert float(jnp.abs(users).sum()) > 0 and float(jnp.abs(items).sum()) > 0


@pytest.mark.parametrize("fusion", sorted(layers.FUSION_KINDS))
def test_mf_item_rep_is_fused_plus_id(fusion):
    model = _make("metammf", fusion=fusion, backbone="mf")
    params = model.init(jax.random.key(0))
    inputs = _inputs()
    users, items = model.embed(params, inputs, jax.random.key(1), False)
    feat = inputs["features"]
    s = None if fusion == "static" else layers.meta_info(params["meta"], feat)
    fused = layers.make_fusion(fusion, (F, 6, 4), 5, 2).apply(params["fusion"], feat, s)
    np.testing.assert_allclose(items[:, :4], fused, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(items[:, 4:], params["item_id"])
    np.testing.assert_array_equal(users, params["user"])
    assert ("meta" in params) == (fusion != "static")


def test_gcn_eval_matches_manual_composition():
    model = _make("metammf", fusion="cp", backbone="gcn")
    params = model.init(jax.random.key(0))
    inputs = _inputs()
    users, items = model.embed(params, inputs, jax.random.key(1), False)
    mf_users, mf_items = _make("metammf", fusion="cp", backbone="mf").embed(
        params, inputs, jax.random.key(1), False)
    x = jnp.concatenate([mf_users, mf_items])
    x = jax.nn.leaky_relu(graph_lib.sage(params["gcn"][0], x, inputs["graph"]), 0.01)
    x = graph_lib.sage(params["gcn"][1], x, inputs["graph"])
    np.testing.assert_allclose(jnp.concatenate([users, items]), x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fusion", sorted(layers.FUSION_KINDS))
def test_gradients_reach_fusion_params(fusion):
    model = _make("metammf", fusion=fusion, backbone="gcn")
    params = model.init(jax.random.key(0))
    inputs = _inputs()
    batch = (jnp.arange(4), jnp.arange(4) % I, (jnp.arange(8).reshape(4, 2) + 1) % I,
             jnp.ones(4))

    def loss(p):
        users, items = model.embed(p, inputs, jax.random.key(2), True)
        return losses.bpr_loss(users, items, *batch)

    grads = jax.jit(jax.grad(loss))(params)
    for layer in grads["fusion"]:
        for name, g in layer.items():
            assert float(jnp.abs(g).max()) > 0, (fusion, name)
    if fusion == "static":
        assert all(set(layer) == {"M"} for layer in grads["fusion"])
    else:
        assert float(jnp.abs(grads["meta"]["W1"]).max()) > 0


def test_dropout_only_in_train_mode():
    model = _make("metammf", backbone="gcn", gcn_dropout=(0.5, 0.2))
    params = model.init(jax.random.key(0))
    inputs = _inputs()
    embed = jax.jit(model.embed, static_argnames="train")
    e1 = embed(params, inputs, jax.random.key(1), train=False)
    e2 = embed(params, inputs, jax.random.key(2), train=False)
    np.testing.assert_array_equal(e1[1], e2[1])
    t1 = embed(params, inputs, jax.random.key(1), train=True)
    t2 = embed(params, inputs, jax.random.key(2), train=True)
    assert not np.allclose(t1[1], t2[1])
    zero_frac = float(jnp.mean(jnp.concatenate([t1[0], t1[1]]) == 0))
    assert 0.05 < zero_frac < 0.45   # output dropout 0.2 (plus zeros passed through)


def test_dropout_keeps_expectation():
    x = jnp.ones((20000,))
    y = models.dropout(jax.random.key(0), x, 0.2)
    assert abs(float(jnp.mean(y == 0)) - 0.2) < 0.02
    assert abs(float(y.mean()) - 1.0) < 0.03
    np.testing.assert_array_equal(models.dropout(jax.random.key(0), x, 0.0), x)


def test_dropout_rate_and_scale_are_exact_on_the_16_bit_grid():
    # 0.25 is on the 2^-16 grid: survivors are scaled by exactly 4/3; 2-D and odd sizes work.
    x = jnp.ones((301, 7))
    y = np.asarray(models.dropout(jax.random.key(3), x, 0.25))
    assert set(np.unique(y)) == {0.0, np.float32(4.0 / 3.0)}
    assert abs(float(np.mean(y == 0)) - 0.25) < 0.02
    # Elements i and i + n/2 share a threefry word (low and high 16 bits): still independent.
    z = np.asarray(models.dropout(jax.random.key(3), jnp.ones((20000,)), 0.5)) == 0
    both = float(np.mean(z[:10000] & z[10000:]))
    assert abs(both - 0.25) < 0.02


def test_dropout_on_row_sharded_nodes_is_split_and_equals_one_device():
    # The mask is drawn per row: on 8 devices each draws only its rows' bits (partitionable
    # threefry), and the values equal the one-device mask bit for bit.
    from jax.sharding import NamedSharding, PartitionSpec as P
    x = jax.random.normal(jax.random.key(1), (4096, 64))
    key = jax.random.key(5)
    one = models.dropout(key, x, 0.5)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rows = NamedSharding(mesh, P("data"))
    f = jax.jit(lambda k, v: models.dropout(k, v, 0.5), out_shardings=rows)
    np.testing.assert_array_equal(np.asarray(f(key, jax.device_put(x, rows))), np.asarray(one))

    def flops(fn, *args):
        cost = fn.lower(*args).compile().cost_analysis()
        return (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"]
    single = flops(jax.jit(lambda k, v: models.dropout(k, v, 0.5)), key, x)
    split = flops(f, key, jax.device_put(x, rows))
    assert split < 0.2 * single, (split, single)   # ~1/8: not replicated


def test_embed_compiles_once_for_two_param_values():
    model = _make("metammf", fusion="dense", backbone="gcn")
    traces = []

    def embed(params, inputs, key):
        traces.append(1)
        return model.embed(params, inputs, key, True)

    f = jax.jit(embed)
    inputs = _inputs()
    a = f(model.init(jax.random.key(0)), inputs, jax.random.key(0))
    b = f(model.init(jax.random.key(1)), inputs, jax.random.key(0))
    assert len(traces) == 1
    assert not np.allclose(a[1], b[1])


@pytest.mark.parametrize("kw,match", [
    (dict(user_dim=8), "user_dim"),
    (dict(fusion="tucker"), "fusion"),
    (dict(backbone="gat"), "backbone"),
])
def test_bad_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        _make("metammf", **kw)


@pytest.mark.parametrize("backbone", models.BACKBONES)
def test_static_mlp_is_metammf_with_static_fusion(backbone):
    static = _make("static_mlp", backbone=backbone)
    meta = _make("metammf", fusion="static", backbone=backbone)
    params = static.init(jax.random.key(4))
    jax.tree.map(np.testing.assert_array_equal, params, meta.init(jax.random.key(4)))
    inputs = _inputs()
    for a, b in zip(static.embed(params, inputs, jax.random.key(1), True),
                    meta.embed(params, inputs, jax.random.key(1), True)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError):  # fusion is fixed, not an option
        _make("static_mlp", fusion="cp")


def test_dropout_rates_outside_zero_one_raise():
    with bad_input("make_metammf: gcn_dropout of 1.0",
                   match=r"gcn_dropout must be two dropout rates in \[0, 1\) \(after GCN layer "
                         r"1, on its output\), got \(1.0, 0.2\). A rate of 1 drops everything"):
        _make("metammf", gcn_dropout=(1.0, 0.2))
    for rates in ((0.5, -0.1), (0.5,), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match="gcn_dropout must be two dropout rates"):
            _make("static_mlp", gcn_dropout=rates)
    _make("metammf", gcn_dropout=(0.0, 0.0))
