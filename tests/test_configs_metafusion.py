"""Every Meta Fusion config variant loads, validates, resolves and builds its cohort; the paper
settings' training values are pinned by a hard-coded table; bad values raise naming the field."""
import jax
import numpy as np
import pytest

from metafusion_jax.configs import metafusion as mf_configs
from metafusion_jax.data.multiview.container import MultiModalData
from metafusion_jax.metafusion import inputs

VARIANTS = ("default", "setting_1_1", "setting_1_2", "setting_1_3", "setting_2_1", "setting_2_2",
            "setting_2_3", "negative_learning", "mfeat", "smoke")
# Members per variant: prod |mod_outs[m]| - 1 (spec 1 "Cohort"; mfeat adds the full widths;
# default on 3-modality data of widths (40, 12, 1): (0,10,20,40) x (0,3,6,12) x (0,1) - 1).
MEMBERS = {"setting_1_1": 24, "setting_1_2": 24, "setting_1_3": 24, "setting_2_1": 24,
           "setting_2_2": 24, "setting_2_3": 24, "negative_learning": 7, "mfeat": 26, "smoke": 5,
           "default": 31}
MFEAT_DIMS = (76, 64, 47)   # fou, kar, zer


def _own_arrays(n=60, widths=(40, 12, 1), seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(n, d)) for d in widths]
    return MultiModalData.from_arrays(xs, np.arange(n) % 3, task="classification", seed=seed)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_validates_resolves_and_builds_its_cohort(variant):
    config = mf_configs.get_config(variant)
    inputs.validate_config(config)
    data = None
    if variant == "default":
        data = _own_arrays()
    elif config.data.source == "simulator":
        config.data.n = 200           # PCA dims up to 120 need >= 120 train+val rows (160 here)
    resolved, datas = inputs.resolve(config, data, [1])
    spec, model, params, stacked = inputs.build_cohort(resolved, datas, jax.random.key(0)[None])
    assert spec.num_members == MEMBERS[variant]
    assert params["head"][0]["w"].shape == (1, spec.num_members, spec.total_width,
                                            resolved.cohort.head_hiddens[0])
    assert params["head"][-1]["b"].shape == (1, spec.num_members, resolved.num_classes)
    # The inputs have the layout the extractor expects (the PCA extractor checks it).
    first = jax.tree.map(lambda a: a[0], params)
    out = jax.eval_shape(model.apply, first, tuple(x[0] for x in stacked["x_val"]))
    assert out.shape == (spec.num_members, datas[0].sizes[1], resolved.num_classes)
    assert resolved.train.epochs == (2 if variant == "smoke" else 30)
    if variant == "mfeat":
        assert datas[0].dims == MFEAT_DIMS


# The training values of the paper settings (spec 5.2), written out once by hand.
PAPER_TABLE = {
    "setting_1_1": dict(mod_outs=((0, 200, 300, 400, 500), (0, 100, 200, 300, 400)),
                        extractor="separate", mod_hiddens=((256,), (256,)), head_hiddens=(128, 64),
                        epochs=30, rho_list=(0.0, 0.99, 3.0), divergence_weights="clustering",
                        coop=True, task="regression", num_classes=1, setting="setting_1_1"),
    "setting_1_2": dict(mod_outs=((0, 50, 60, 70, 80), (0, 60, 70, 80, 90)), extractor="pca",
                        mod_hiddens=((), ()), head_hiddens=(300, 200, 100), epochs=30,
                        rho_list=(0.0, 0.99, 3.0), divergence_weights="clustering", coop=True,
                        task="regression", num_classes=1, setting="setting_1_2"),
    "setting_2_2": dict(mod_outs=((0, 60, 80, 100, 120), (0, 60, 80, 100, 120)), extractor="pca",
                        mod_hiddens=((), ()), head_hiddens=(300, 200, 100), epochs=30,
                        rho_list=(0.0, 0.99, 3.0), divergence_weights="clustering", coop=True,
                        task="regression", num_classes=1, setting="setting_2_2"),
    "negative_learning": dict(mod_outs=((0, 50, 60, 80), (0, 60)), extractor="pca",
                              mod_hiddens=((), ()), head_hiddens=(300, 200, 100), epochs=30,
                              rho_list=(0.0, 10.0), divergence_weights="adversarial", coop=False,
                              task="regression", num_classes=1, setting="negative_learning"),
    "mfeat": dict(mod_outs=((0, 20), (0, 20), (0, 20)), extractor="pca",
                  mod_hiddens=((), (), ()), head_hiddens=(64, 32), epochs=30,
                  rho_list=(0.0, 0.99, 3.0), divergence_weights="clustering", coop=False,
                  task="classification", num_classes=10, setting="mfeat"),
}


def _row(c):
    return dict(mod_outs=c.cohort.mod_outs, extractor=c.cohort.extractor,
                mod_hiddens=c.cohort.mod_hiddens, head_hiddens=c.cohort.head_hiddens,
                epochs=c.train.epochs, rho_list=c.rho_list, divergence_weights=c.divergence_weights,
                coop=c.baselines.coop, task=c.task, num_classes=c.num_classes,
                setting=c.data.setting)


@pytest.mark.parametrize("variant", sorted(PAPER_TABLE))
def test_variant_values_match_the_hand_written_table(variant):
    assert _row(mf_configs.get_config(variant)) == PAPER_TABLE[variant]


def test_shared_values_new_fields_and_no_argument():
    c = mf_configs.get_config("setting_2_2")
    assert not c.warm_start_b1 and not c.cohort.add_full and c.train.batch_size == 64
    assert c.train.learning_rate == 1e-3 and c.ensembles.meta_learner_epochs == 10
    assert c.checkpoint_every_epochs == 10 and c.cohort.latent_fractions == (0.25, 0.5)
    assert not c.baselines.coop_auto
    assert mf_configs.get_config().to_dict() == c.to_dict()
    assert mf_configs.get_config("mfeat").cohort.add_full
    assert mf_configs.get_config("mfeat").ensembles.meta_learner_epochs == 15
    assert mf_configs.PAPER_SETTINGS["negative_learning"]["mod_outs_large"] == (
        (0, 50, 60, 80, 100), (0, 60, 80, 100))
    assert mf_configs.PAPER_SETTINGS["negative_learning"]["rho_list"] == (0.0, 1.0, 3.0, 5.0, 10.0)
    smoke = mf_configs.get_config("smoke")
    assert (smoke.data.setting, smoke.data.n, smoke.cohort.mod_outs) == (
        "setting_1_1", 200, ((0, 8, 500), (0, 400)))


def test_default_variant_takes_everything_from_the_data():
    c = mf_configs.get_config("default")
    assert (c.task, c.num_classes, c.cohort.mod_outs, c.data.source) == ("", 0, (), "")
    assert c.cohort.extractor == "pca" and c.cohort.head_hiddens == (64, 32)
    assert c.baselines.coop and c.baselines.coop_auto
    resolved, _ = inputs.resolve(c, _own_arrays(), [0])
    # Hand-computed: 0.25 * 40 = 10, 0.5 * 40 = 20; 0.25 * 12 = 3, 0.5 * 12 = 6; width 1: 0.25
    # rounds to 0 and 0.5 to 1 (= the width), so only (0, 1).
    assert resolved.cohort.mod_outs == ((0, 10, 20, 40), (0, 3, 6, 12), (0, 1))
    assert resolved.cohort.mod_hiddens == ((), (), ())
    assert (resolved.task, resolved.num_classes) == ("classification", 3)
    assert not resolved.baselines.coop               # classification: turned off, not an error


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match="setting_9_9"):
        mf_configs.get_config("setting_9_9")


@pytest.mark.parametrize("field,value,message", [
    ("data.source", "csv", "data.source"),
    ("data.setting", "setting_3_1", "data.setting"),
    ("task", "ranking", "config.task"),
    ("num_classes", 3, "num_classes"),
    ("num_classes", -1, "num_classes"),
    ("num_seeds", 0, "num_seeds"),
    ("checkpoint_every_epochs", 0, "checkpoint_every_epochs"),
    ("train.epochs", 0, "train.epochs"),
    ("train.batch_size", 0, "train.batch_size"),
    ("train.learning_rate", 0.0, "learning_rate"),
    ("rho_list", (0.99, 3.0), "rho_list"),
    ("rho_list", (0.0,), "rho_list"),
    ("rho_list", (0.0, -1.0), "rho_list"),
    ("divergence_weights", "fixed", "divergence_weights"),
    ("cohort.extractor", "autoencoder", "cohort.extractor"),
    ("cohort.mod_hiddens", ((),), "mod_hiddens"),
    ("cohort.head_hiddens", (), "head_hiddens"),
    ("cohort.latent_fractions", (0.5, 1.0), "latent_fractions"),
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
        inputs.validate_config(config)


def test_empty_values_mean_from_the_data_and_validate():
    config = mf_configs.get_config("setting_2_2")
    config.task, config.num_classes, config.cohort.mod_outs = "", 0, ()
    inputs.validate_config(config)


def test_coop_on_classification_raises():
    config = mf_configs.get_config("mfeat")
    config.baselines.coop = True
    with pytest.raises(ValueError, match="baselines.coop"):
        inputs.validate_config(config)


def test_simulator_and_mfeat_loaders_give_stacked_inputs():
    config = mf_configs.get_config("smoke")
    config.data.n = 60
    datas = [inputs.DATA_SOURCES["simulator"](config, s) for s in (1, 2)]
    stacked = inputs.stack_splits(datas, inputs.raw_layout)
    assert stacked["x_train"][0].shape == (2, 38, 500)
    assert stacked["y_test"].shape == (2, 12)
    np.testing.assert_array_equal(np.asarray(stacked["y_val"][1]), datas[1].val.y)
    mfeat = mf_configs.get_config("mfeat")
    data = inputs.DATA_SOURCES["mfeat"](mfeat, 0)
    assert data.dims == MFEAT_DIMS and data.n_classes == 10
    # standardised with train+val statistics: mean 0 / std 1 over those rows.
    fit = np.concatenate([data.train.xs[0], data.val.xs[0]])
    np.testing.assert_allclose(fit.mean(0), 0.0, atol=1e-4)
