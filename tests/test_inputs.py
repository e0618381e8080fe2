"""inputs.resolve: the config filled from the data, and one error per way a config value can
contradict the data (naming the field, the data's value and the fix), before anything trains."""
import numpy as np
from reliability import bad_input

from metafusion_jax.configs import metafusion as mf_configs
from metafusion_jax.data.multiview.container import MultiModalData
from metafusion_jax.metafusion import inputs


def _data(n=50, widths=(8, 5), task="regression", seed=0, classes=3):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(n, d)) for d in widths]
    y = np.arange(n) % classes if task == "classification" else rng.normal(size=n)
    return MultiModalData.from_arrays(xs, y, task=task, seed=seed)


def _config(**cohort):
    config = mf_configs.get_config("smoke")
    config.cohort.mod_outs = ((0, 4, 8), (0, 5))
    for k, v in cohort.items():
        config.cohort[k] = v
    return config


def test_resolve_fills_from_the_data_and_returns_a_copy():
    config = mf_configs.get_config("default")
    data = _data(n=100, widths=(76, 6, 300), task="classification", classes=4)
    resolved, datas = inputs.resolve(config, data, [1, 2])
    # N_fit = 60 + 20 = 80 rows (PCA is fitted on train+val): 0.5 * 300 = 150 is capped at 80.
    assert resolved.cohort.mod_outs == ((0, 19, 38, 76), (0, 2, 3, 6), (0, 75, 80, 300))
    assert (resolved.task, resolved.num_classes) == ("classification", 4)
    assert len(datas) == 2 and datas[0].dims == (76, 6, 300)
    assert (config.task, config.num_classes, config.cohort.mod_outs) == ("", 0, ())  # untouched


def test_default_mod_outs_rounding():
    # Halves round up: 0.25 * 6 = 1.5 -> 2, 0.5 * 5 = 2.5 -> 3; 0.25 * 2 = 0.5 -> 1.
    assert inputs.default_mod_outs((6, 5, 2), (0.25, 0.5)) == ((0, 2, 3, 6), (0, 1, 3, 5), (0, 1, 2))
    assert inputs.default_mod_outs((100,), (0.25, 0.5), max_latent=30) == ((0, 25, 30, 100),)
    assert inputs.default_mod_outs((10,), ()) == ((0, 10),)


def test_coop_stays_for_two_modality_regression_and_auto_turns_off_otherwise():
    config = mf_configs.get_config("default")
    assert inputs.resolve(config, _data(), [0])[0].baselines.coop
    assert not inputs.resolve(config, _data(widths=(4, 3, 2)), [0])[0].baselines.coop


def test_data_as_a_function_of_the_seed():
    resolved, datas = inputs.resolve(_config(), lambda s: _data(seed=s), [3, 4])
    assert not np.array_equal(datas[0].test.y, datas[1].test.y)
    assert resolved.cohort.mod_hiddens == ((), ())


def _resolve(data_kwargs=None, **change):
    config = _config()
    for k, v in change.items():
        (config.cohort if k in config.cohort else config)[k] = v
    return inputs.resolve(config, _data(**(data_kwargs or {})), [0])


def test_config_contradicting_the_data_raises():
    with bad_input("Meta Fusion config: classification task on regression (continuous) data",
                   match=r"config.task: expected 'regression' \(the data's task\), got "
                   r"'classification'. Set config.task = 'regression', or ''"):
        _resolve(task="classification", num_classes=3)
    with bad_input("Meta Fusion config: regression task on classification data",
                   match=r"config.task: expected 'classification' \(the data's task\), got "
                   r"'regression'"):
        _resolve(dict(task="classification"))
    with bad_input("Meta Fusion config: num_classes other than the data's classes",
                   match=r"config.num_classes: expected 3 \(the data's n_classes\), got 4. Set "
                   r"config.num_classes = 3"):
        _resolve(dict(task="classification"), task="classification", num_classes=4)
    with bad_input("Meta Fusion config: fewer cohort.mod_outs tuples than modalities",
                   match=r"config.cohort.mod_outs: expected 2 tuples.*widths \(8, 5\)"):
        _resolve(mod_outs=((0, 4, 8),))
    with bad_input("Meta Fusion config: a cohort dim above the modality width",
                   match=r"config.cohort.mod_outs\[0\]: expected dims in \[0, 8\].*Remove \[9\]"):
        _resolve(mod_outs=((0, 4, 9), (0, 5)))
    with bad_input("Meta Fusion config: more cohort.mod_hiddens tuples than modalities",
                   match=r"config.cohort.mod_hiddens: expected 2 tuples"):
        _resolve(mod_hiddens=((4,), (4,), (4,)))
    with bad_input("Meta Fusion config: more modalities in the data than cohort.mod_outs tuples",
                   match=r"config.cohort.mod_outs: expected 3 tuples"):
        _resolve(dict(widths=(8, 5, 3)))


def test_pca_dim_above_n_fit():
    # N = 30: test 6, val 6, train 18 -> N_fit = 24 < 26 < 30 = width.
    config = _config(mod_outs=((0, 26, 30), (0, 5)))
    with bad_input("Meta Fusion config: a PCA latent dim above the train+val rows",
                   match=r"PCA latent dims <= min\(N_fit, D\) = 24 \(PCA is fitted on the 24 "
                   r"train\+val rows\)"):
        inputs.resolve(config, _data(n=30, widths=(30, 5)), [0])


def test_coop_on_the_wrong_data_raises_without_auto():
    config = _config(mod_outs=((0, 4, 8), (0, 5), (0, 3)), mod_hiddens=())
    with bad_input("Meta Fusion config: Coop on data of 3 modalities without coop_auto",
                   match=r"config.baselines.coop.*the data have 3 modalities"):
        inputs.resolve(config, _data(widths=(8, 5, 3)), [0])
    config = mf_configs.get_config("mfeat")
    config.data.source, config.num_classes = "", 0
    config.cohort.mod_outs, config.cohort.mod_hiddens = ((0, 4), (0, 3)), ()
    config.baselines.coop = True
    config.baselines.coop_auto = True         # validate_config lets it through; resolve turns it off
    assert not inputs.resolve(config, _data(task="classification"), [0])[0].baselines.coop


def test_seeds_with_different_data_shapes_raise():
    with bad_input("Meta Fusion data: seeds whose data have different modality widths",
                   match=r"seed 1 has modality widths \(8, 6\), but seed 0 has \(8, 5\)"):
        inputs.resolve(_config(), lambda s: _data(widths=(8, 5 + s)), [0, 1])
    with bad_input("Meta Fusion data: seeds whose data have different split sizes",
                   match=r"seed 1 has split sizes.*\(36, 12, 12\)"):
        inputs.resolve(_config(), lambda s: _data(n=50 + 10 * s), [0, 1])


def test_bad_data_arguments():
    config = mf_configs.get_config("default")
    with bad_input("Meta Fusion config: no data passed and no data.source",
                   match="config.data.source.*pass data="):
        inputs.resolve(config, None, [0])
    with bad_input("Meta Fusion data: data= an array instead of a MultiModalData",
                   match="data must be None.*got ndarray"):
        inputs.resolve(config, np.zeros((3, 3)), [0])
    bad = _data()._replace(task="ranking")
    with bad_input("Meta Fusion data: hand-built data with an unknown task",
                   match="task must be one of"):
        inputs.resolve(config, bad, [0])
    with bad_input("Meta Fusion inputs: resolve with no seeds", match="seeds"):
        inputs.resolve(config, _data(), [])
