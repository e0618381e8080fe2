"""Every configs/metammf.py variant loads, validates and its model initialises (jax.eval_shape)."""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
import pytest

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import inputs
from metafusion_jax.metammf import models
from metafusion_jax.metammf import train
from reliability import bad_input

N_USERS, N_ITEMS = 7, 11
# Feature width each variant feeds the model: ml100k title 64 + genre_year 21 + kg 65 (no PCA);
# mmgcn after PCA 64+64+32; mmgcn_head the raw MovieLens 2048+128+100; the rest a fake width.
FEATURE_DIMS = {"ml100k": 150, "mmgcn": 160, "mmgcn_head": 2276}


def fake_inputs(feature_dim):
    rng = np.random.default_rng(0)
    pairs = np.stack([np.arange(N_USERS).repeat(2), rng.integers(0, N_ITEMS, 2 * N_USERS)], 1)
    pairs = np.unique(pairs, axis=0)
    graph = graph_lib.make_bipartite_graph(pairs, N_USERS, N_ITEMS)
    return {"features": jax.ShapeDtypeStruct((N_ITEMS, feature_dim), jnp.float32),
            "graph": jax.tree.map(jnp.asarray, graph)}


def shapes_of(config, feature_dim):
    spec = models.MODELS[config.model.name]
    model = spec.factory(n_users=N_USERS, n_items=N_ITEMS, feature_dim=feature_dim,
                         modality_slices=None, **inputs.model_kwargs(config.model))
    params = jax.eval_shape(model.init, jax.random.key(0))
    user, item = jax.eval_shape(
        lambda p, x: model.embed(p, x, jax.random.key(1), True), params, fake_inputs(feature_dim))
    return params, user, item


@pytest.mark.parametrize("variant", metammf_configs.VARIANTS)
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_variant_and_model_initialises(variant, name):
    config = metammf_configs.get_config(f"{variant},model={name}")
    train.validate_config(config)
    feature_dim = FEATURE_DIMS.get(variant, 16)
    params, user, item = shapes_of(config, feature_dim)
    assert user.shape[0] == N_USERS and item.shape[0] == N_ITEMS
    assert user.shape[1] == item.shape[1]
    if name == "metammf":
        assert user.shape == (N_USERS, config.model.user_dim)
        dims = (feature_dim,) + tuple(config.model.fusion_dims)
        assert len(params["fusion"]) == len(dims) - 1
        assert params["meta"]["W2"].shape[1] == config.model.s_dim


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_config_defaults_are_the_factory_defaults(name):
    """Results do not change with the config structure: every option defaults as its factory."""
    spec = models.MODELS[name]
    defaults = {k: p.default for k, p in inspect.signature(spec.factory).parameters.items()
                if k in spec.options}
    config = metammf_configs.get_config(f"ml100k,model={name}")
    got = inputs.model_kwargs(config.model)
    assert set(got) == set(spec.options)
    expected = {k: (0 if k == "meta_hidden" else v) for k, v in defaults.items()}  # 0 = None = F
    assert got == expected


def test_default_is_ml100k_and_paper_dims():
    assert metammf_configs.get_config().to_dict() == metammf_configs.get_config("ml100k").to_dict()
    v0530 = metammf_configs.get_config("mmgcn")
    assert v0530.data.pca_dims == (("visual", 64), ("acoustic", 64), ("textual", 32))
    assert v0530.data.pca_skip_absent and v0530.data.feature_files == ()
    assert (v0530.model.fusion, tuple(v0530.model.fusion_dims)) == ("dense", (80, 32))
    head = metammf_configs.get_config("mmgcn_head")
    assert head.data.pca_dims == ()
    assert (head.model.fusion, tuple(head.model.fusion_dims)) == ("cp", (1024, 512, 256, 32))
    assert (head.model.rank, head.model.s_dim) == (16, 5)
    params, _, _ = shapes_of(head, 2276)
    # spec 8.2, cp layer n: A [d_{n-1}, R], B [R, d_n], C [R, S], M [d_{n-1}, d_n]; no T.
    widths = [(2276, 1024), (1024, 512), (512, 256), (256, 32)]
    got = [tuple(layer["M"].shape) for layer in params["fusion"]]
    assert got == widths
    assert [tuple(layer["A"].shape) for layer in params["fusion"]] == [(d, 16) for d, _ in widths]
    assert params["meta"]["W1"].shape == (2276, 2276)


def test_suffixes_override_fields():
    config = metammf_configs.get_config("synthetic,fusion=cp,backbone=mf,seed=3,epochs=7")
    assert (config.model.fusion, config.model.backbone, config.seed, config.num_epochs) == (
        "cp", "mf", 3, 7)
    assert config.data.source == "synthetic"
    config = metammf_configs.get_config("ml100k,model=lightgcn,fusion=cp")
    train.validate_config(config)  # the MetaMMF fields stay, unused by lightgcn
    assert inputs.model_kwargs(config.model) == {"dim": 64, "n_layers": 3}


def test_baseline_options_reach_the_model():
    config = metammf_configs.get_config("ml100k,model=lattice")
    config.model.lattice.dim = 12
    config.model.lattice.knn_k = 3
    train.validate_config(config)
    assert inputs.model_kwargs(config.model) == {"dim": 12, "feat_embed_dim": 64, "n_layers": 2,
                                                 "n_item_layers": 1, "knn_k": 3,
                                                 "lambda_coeff": 0.9}
    params, user, _ = shapes_of(config, 150)
    assert params["item"].shape == (N_ITEMS, 12) and user.shape == (N_USERS, 12)
    config = metammf_configs.get_config("smoke,model=vbpr")  # smoke shrinks the baselines too
    assert inputs.model_kwargs(config.model) == {"id_dim": 4, "content_dim": 32}


@pytest.mark.parametrize("name, path, match", [
    ("lightgcn", "lightgcn.num_layers",
     r"config.model.lightgcn.num_layers is not an option of model 'lightgcn'; its options are "
     r"\['dim', 'n_layers'\]"),
    ("metammf", "hidden", r"config.model.hidden is not a field of any model "
                          r"\(config.model.name='metammf'\)"),
    ("vbpr", "vbpr.dim", r"config.model.vbpr.dim is not an option of model 'vbpr'"),
])
def test_unknown_model_fields_raise(name, path, match):
    config = metammf_configs.get_config(f"ml100k,model={name}")
    *group, leaf = path.split(".")
    node = config.model[group[0]] if group else config.model
    node[leaf] = 1
    with pytest.raises(ValueError, match=match):
        train.validate_config(config)


@pytest.mark.parametrize("field, value", [
    ("pca_dims", (64,)),
    ("pca_dims", (("visual", "64"),)),
    ("feature_files", (("visual",),)),
])
def test_bad_data_pair_fields_raise(field, value):
    config = metammf_configs.get_config("mmgcn")
    config.data[field] = value
    with pytest.raises(ValueError, match=f"config.data.{field} must be a tuple of"):
        train.validate_config(config)


@pytest.mark.parametrize("arg, match", [
    ("imagenet", "config variant"),
    ("ml100k,lr=1", "config suffix"),
    ("ml100k,model", "config suffix"),
    ("ml100k,seed=abc", "needs a int"),
])
def test_bad_arguments_raise(arg, match):
    with pytest.raises(ValueError, match=match):
        metammf_configs.get_config(arg)


@pytest.mark.parametrize("arg, match", [
    ("ml100k,fusion=tucker", "fusion"),
    ("ml100k,backbone=mlp", "backbone"),
])
def test_bad_model_fields_raise_at_build(arg, match):
    with pytest.raises(ValueError, match=match):
        shapes_of(metammf_configs.get_config(arg), 150)


def test_bad_field_values_raise():
    config = metammf_configs.get_config("ml100k,model=ngcf")
    with pytest.raises(ValueError, match="config.model.name"):
        train.validate_config(config)
    config = metammf_configs.get_config("ml100k")
    config.data.source = "amazon"
    with pytest.raises(ValueError, match="config.data.source"):
        train.validate_config(config)


def test_run_fields_are_checked():
    config = metammf_configs.get_config("smoke")
    config.eval_chunk = -3
    with bad_input("MetaMMF config: eval_chunk of -3", match=r"config.eval_chunk must be an int "
                                                             r">= 1 .*got -3"):
        train.validate_config(config)
    config = metammf_configs.get_config("smoke")
    config.model.gcn_dropout = (0.5,)
    with bad_input("MetaMMF config: gcn_dropout with one rate",
                   match=r"config.model.gcn_dropout must be two dropout rates"):
        train.validate_config(config)
    # ConfigDict's type safety stops --config.seed=1.5 and the like; a config built without it
    # (type_safe=False) meets the same checks in validate_config.
    loose = lambda: ml_collections.ConfigDict(metammf_configs.get_config("smoke").to_dict(),
                                              type_safe=False)
    for field, value, match in [("seed", 1.5, r"config.seed must be an int, got 1.5"),
                                ("eval_chunk", 2.5, r"config.eval_chunk must be an int >= 1"),
                                ("progress", 1, r"config.progress must be True or")]:
        config = loose()
        config[field] = value
        with pytest.raises(ValueError, match=match):
            train.validate_config(config)
    config = loose()
    config.data.standardize = "yes"
    with bad_input("MetaMMF config: data.standardize not a bool",
                   match=r"config.data.standardize must be True or False, got 'yes'"):
        train.validate_config(config)
    config = metammf_configs.get_config("smoke")
    del config.data["standardize"]  # a config written before the field existed: its default
    train.validate_config(config)
