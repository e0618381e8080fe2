"""Every Meta Fusion config variant loads, validates and builds its cohort; bad values raise."""
import os

import jax
import numpy as np
import pytest

from metafusion_jax.data.multiview import simulator
from metafusion_jax.metafusion import cohort as cohort_lib
from metafusion_jax.configs import metafusion as mf_configs
from metafusion_jax.metafusion import train


VARIANTS = ("setting_1_1", "setting_1_2", "setting_1_3", "setting_2_1", "setting_2_2",
            "setting_2_3", "negative_learning", "mfeat", "smoke")
# Members per variant: prod |mod_outs[m]| - 1 (spec 1 "Cohort"; mfeat adds the full widths).
MEMBERS = {"setting_1_1": 24, "setting_1_2": 24, "setting_1_3": 24, "setting_2_1": 24,
           "setting_2_2": 24, "setting_2_3": 24, "negative_learning": 7, "mfeat": 26, "smoke": 5}
MFEAT_DIMS = (76, 64, 47)   # fou, kar, zer


def _dims(config):
    if config.data.source == "mfeat":
        return MFEAT_DIMS
    return simulator.SETTINGS[config.data.setting]["dim_modalities"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_validates_and_initialises(variant):
    config = mf_configs.get_config(variant)
    train.validate_config(config)
    dims = _dims(config)
    mod_outs = [list(m) + ([p] if config.cohort.add_full else [])
                for m, p in zip(config.cohort.mod_outs, dims)]
    spec = cohort_lib.make_cohort_spec(mod_outs, dims)
    assert spec.num_members == MEMBERS[variant]
    # Head shapes without computing anything (eval_shape of the stacked init).
    heads = jax.eval_shape(lambda k: cohort_lib.init_heads(
        k, spec, hidden=tuple(config.cohort.head_hiddens), out_dim=config.num_classes),
        jax.random.key(0))
    assert heads[0]["w"].shape == (spec.num_members, spec.total_width,
                                   config.cohort.head_hiddens[0])
    assert heads[-1]["b"].shape == (spec.num_members, config.num_classes)
    assert config.train.epochs == (2 if variant == "smoke" else 30)


def test_paper_settings_match_spec_table():
    c = mf_configs.get_config("setting_2_2")
    assert c.rho_list == [0.0, 0.99, 3.0] and c.cohort.extractor == "pca"
    assert c.cohort.head_hiddens == [300, 200, 100] and not c.warm_start_b1
    c = mf_configs.get_config("setting_1_1")
    assert c.cohort.extractor == "separate" and c.cohort.mod_hiddens == [[256], [256]]
    c = mf_configs.get_config("negative_learning")
    assert c.rho_list == [0.0, 10.0] and c.divergence_weights == "adversarial"
    c = mf_configs.get_config("mfeat")
    assert (c.task, c.num_classes, c.baselines.coop) == ("classification", 10, False)


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match="setting_9_9"):
        mf_configs.get_config("setting_9_9")


@pytest.mark.parametrize("field,value,message", [
    ("data.source", "csv", "data.source"),
    ("data.setting", "setting_3_1", "data.setting"),
    ("task", "ranking", "config.task"),
    ("num_classes", 3, "num_classes"),
    ("num_seeds", 0, "num_seeds"),
    ("train.epochs", 0, "train.epochs"),
    ("train.batch_size", 0, "train.batch_size"),
    ("train.learning_rate", 0.0, "learning_rate"),
    ("rho_list", [0.99, 3.0], "rho_list"),
    ("rho_list", [0.0], "rho_list"),
    ("rho_list", [0.0, -1.0], "rho_list"),
    ("divergence_weights", "fixed", "divergence_weights"),
    ("cohort.extractor", "autoencoder", "cohort.extractor"),
    ("cohort.mod_hiddens", [[]], "mod_hiddens"),
    ("cohort.head_hiddens", [], "head_hiddens"),
    ("optimal_k", -1, "optimal_k"),
])
def test_bad_values_raise(field, value, message):
    config = mf_configs.get_config("setting_2_2")
    node, name = config, field
    if "." in field:
        group, name = field.split(".")
        node = config[group]
    node[name] = value
    with pytest.raises(ValueError, match=message):
        train.validate_config(config)


def test_coop_on_classification_raises():
    config = mf_configs.get_config("mfeat")
    config.baselines.coop = True
    with pytest.raises(ValueError, match="baselines.coop"):
        train.validate_config(config)


def test_simulator_and_mfeat_loaders_give_stacked_inputs():
    config = mf_configs.get_config("smoke")
    config.data.n = 60
    datas = [train.DATA_SOURCES["simulator"](config, s) for s in (1, 2)]
    stacked = train.stack_splits(datas, train.raw_layout)
    assert stacked["x_train"][0].shape == (2, 38, 500)
    assert stacked["y_test"].shape == (2, 12)
    np.testing.assert_array_equal(np.asarray(stacked["y_val"][1]), datas[1].val.y)
    mfeat = mf_configs.get_config("mfeat")
    data = train.DATA_SOURCES["mfeat"](mfeat, 0)
    assert data.dims == MFEAT_DIMS and data.n_classes == 10
    # standardised with train+val statistics: mean 0 / std 1 over those rows.
    fit = np.concatenate([data.train.xs[0], data.val.xs[0]])
    np.testing.assert_allclose(fit.mean(0), 0.0, atol=1e-4)
