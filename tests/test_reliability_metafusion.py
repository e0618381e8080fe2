"""Meta Fusion's last silent paths (issue #13): each bad input raises one clear message, and
nothing trains or is saved before the config and data are checked."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reliability import bad_input

from metafusion_jax.configs import metafusion as mf_configs
from metafusion_jax.configs import metammf as mm_configs
from metafusion_jax.data.multiview import container, simulator
from metafusion_jax.data.multiview.container import MultiModalData, Split
from metafusion_jax.data.multiview.mfeat import MFEAT_VIEWS, load_mfeat
from metafusion_jax.metafusion import cohort, extractors, inputs, mutual, records, train, weights
from metafusion_jax.training.checkpoints import RunCheckpoints

RNG = np.random.default_rng(0)


def _config():
    """The smoke config cut to 3 members (5 with the default mod_outs) and one epoch."""
    config = mf_configs.get_config("smoke")
    config.data.n = 60
    config.cohort.mod_outs = ((0, 4), (0, 400))       # (4, 400), (4, 0), (0, 400)
    config.cohort.head_hiddens = (4,)
    config.train.epochs = 1
    config.baselines.run = config.baselines.coop = False
    return config


def _arrays(n, task="regression", classes=2, widths=(4, 3)):
    xs = [RNG.normal(size=(n, d)) for d in widths]
    y = np.arange(n) % classes if task == "classification" else RNG.normal(size=n)
    return xs, y


# ----------------------------------------------------------------- 3: a workdir of another run


def _fake_checkpoint(workdir, saved_config):
    ckpt = RunCheckpoints(workdir)
    ckpt.save_latest(1, {"x": np.zeros(2, np.float32)},
                     {"stage": "indep", "completed": [], "timing": {}, "progress": None,
                      "config": saved_config})
    ckpt.close()


def test_workdir_of_another_config_names_the_fields_that_differ(tmp_path):
    config = _config()
    saved = inputs.resolve(config, None, [1])[0]
    saved.rho_list, saved.train.learning_rate = (0.0, 2.0), 0.01
    _fake_checkpoint(str(tmp_path), saved.to_json(sort_keys=True))
    with bad_input("Meta Fusion resume: a workdir holding a run of another config",
                   match=r"holds a checkpoint of a different run \(rho_list: saved \(0.0, 2.0\), "
                   r"now \(0.0, 1.0\); train.learning_rate: saved 0.01, now 0.001\)") as info:
        train.train_and_evaluate(config, str(tmp_path))
    assert "use a new --workdir" in str(info.value)
    assert not os.path.exists(tmp_path / "results.json")


def test_check_resumable_lists_at_most_eight_fields():
    now = {"rho_list": [0.0, 1.0], "cohort": {"mod_outs": [[0, 4]]},
           **{f"f{i}": i for i in range(10)}}
    saved = {**now, "cohort": {"mod_outs": [[0, 5]]}, **{f"f{i}": -i for i in range(1, 10)}}
    records.check_resumable(json.dumps(now), json.dumps(now), "wd")      # the same run resumes
    with pytest.raises(ValueError, match=r"cohort.mod_outs: saved \(\(0, 5\),\), now \(\(0, 4\),"
                       r"\); f1: saved -1, now 1;.*now 7; and 2 more\)"):
        records.check_resumable(json.dumps(saved), json.dumps(now), "wd")


def test_metammf_workdir_given_to_the_meta_fusion_trainer(tmp_path, fast_compile):
    from metafusion_jax.metammf import train as metammf_train
    mm = mm_configs.get_config("smoke")
    mm.num_epochs = 1
    metammf_train.train_and_evaluate(mm, str(tmp_path))
    os.remove(tmp_path / "results.json")
    with bad_input("Meta Fusion resume: a MetaMMF workdir given to the Meta Fusion trainer",
                   match=r"holds a checkpoint of a different run \(a checkpoint the Meta Fusion "
                   r"trainer did not write \(e.g. a MetaMMF run's"):
        train.train_and_evaluate(_config(), str(tmp_path))
    assert not os.path.exists(tmp_path / "results.json")


def test_workdir_that_is_a_file(tmp_path):
    path = tmp_path / "results"
    path.write_text("not a folder")
    with bad_input("Meta Fusion workdir: a file given as the workdir",
                   match=r"workdir .*results is a file, not a folder"):
        train.train_and_evaluate(_config(), str(path))


# ----------------------------------------------------------------- 7: checked before training


@pytest.mark.parametrize("weight_type", ["clustering", "adversarial"])
def test_optimal_k_above_the_cohort_size_fails_before_anything_is_saved(tmp_path, weight_type):
    config = _config()
    config.optimal_k, config.divergence_weights = 4, weight_type
    with bad_input("Meta Fusion config: optimal_k above the cohort size",
                   match=r"config.optimal_k: expected 0 \(choose k by silhouette\) or a cluster "
                   r"count in \[1, 3\] \(the cohort has M = 3 members\), got 4. Set "
                   r"config.optimal_k = 0 or a value <= 3."):
        train.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")       # the fixed config can use it
    config.optimal_k = 3
    assert inputs.resolve(config, None, [1])[0].optimal_k == 3
    config.optimal_k, config.divergence_weights = 4, "uniform"   # unused by uniform weights
    inputs.resolve(config, None, [1])


def test_clustering_weights_optimal_k_hint_matches_the_config():
    with bad_input("Meta Fusion weights: clustering_weights optimal_k above M",
                   match=r"optimal_k must be in \[1, M=3\].*pass optimal_k=None "
                   r"\(config.optimal_k = 0\)"):
        weights.clustering_weights(np.array([0.1, 0.2, 0.3]), seed=0, optimal_k=4)


def test_num_classes_and_labels_checked_against_the_data():
    xs, y = _arrays(60, "classification", classes=3)
    data = MultiModalData.from_arrays(xs, y, task="classification")
    with bad_input("Meta Fusion data: hand-built n_classes below the labels (labels >= "
                   "num_classes)", match=r"data \(arrays\) train split: labels must lie in "
                   r"\[0, 2\), got range \[0, 2\]"):
        inputs.resolve(mf_configs.get_config("default"), data._replace(n_classes=2), [0])
    reg = MultiModalData.from_arrays(*_arrays(60), task="regression")
    continuous = reg._replace(task="classification", n_classes=2)
    with bad_input("Meta Fusion data: hand-built classification data with continuous targets",
                   match=r"train split: labels must be integers \(class indices 0..C-1\), got "
                   r"dtype float32"):
        inputs.resolve(mf_configs.get_config("default"), continuous, [0])
    config = mf_configs.get_config("smoke")
    config.task, config.num_classes = "classification", 2
    with bad_input("Meta Fusion config: classification task on the simulator's continuous "
                   "targets", match=r"config.task: expected 'regression' \(the data's task\)"):
        inputs.resolve(config, None, [1])


# ----------------------------------------------------------------- 9: library functions


def test_task_and_joint_loss_reject_concrete_labels_out_of_range():
    f = jnp.zeros((4, 3))
    with bad_input("Meta Fusion task_loss: classification labels >= C",
                   match=r"task_loss: classification labels y must be integer class indices in "
                   r"\[0, 3\) \(C = f.shape\[-1\] outputs\), got range \[0, 3\]"):
        mutual.task_loss(f, jnp.array([0, 1, 3, 0]), None, "classification")
    with bad_input("Meta Fusion task_loss: non-integer classification labels",
                   match=r"got range \[0.0, 1.5\] of dtype float32"):
        mutual.task_loss(f, jnp.array([0.0, 1.5, 1.0, 0.0]), jnp.ones(4), "classification")
    with bad_input("Meta Fusion joint_loss: negative classification labels",
                   match=r"joint_loss: classification labels .* got range \[-1, 1\]"):
        mutual.joint_loss(f[None].repeat(2, 0), jnp.array([0, 1, -1, 0]), jnp.ones(4), 1.0,
                          jnp.ones(2), "classification")
    with bad_input("Meta Fusion task_loss: unknown task", match="task must be one of"):
        mutual.task_loss(f, jnp.zeros(4, jnp.int32), None, "ranking")
    # In range: unchanged; traced labels (inside jit) are trusted, as documented.
    good = jnp.array([0, 1, 2, 0])
    assert np.isclose(float(mutual.task_loss(f, good, None, "classification")), np.log(3.0))
    traced = jax.jit(lambda y: mutual.task_loss(f, y, None, "classification"))
    assert np.isclose(float(traced(good)), np.log(3.0))
    traced(jnp.array([0, 1, 3, 0]))                      # no check inside jit (no raise)


def test_non_integer_cohort_dims_and_widths():
    with bad_input("Meta Fusion cohort: a non-integer dim in make_cohort_spec's mod_outs",
                   match=r"mod_outs\[0\] = \(0, 60.5\) has non-integer dims \[60.5\]"):
        cohort.make_cohort_spec([[0, 60.5]], [100])
    spec = cohort.make_cohort_spec([[0, 3, 5]], [5])
    with bad_input("Meta Fusion cohort: a non-integer head width in make_cohort",
                   match=r"hidden sizes must be integers >= 1, got \(3.5,\)"):
        cohort.make_cohort(spec, extractors.make_pca_extractor(spec), hidden=(3.5,), out_dim=1)
    config = mf_configs.get_config("setting_2_2")
    config.cohort.mod_outs = ((0, 60.5, 120), (0, 60))
    with bad_input("Meta Fusion config: a non-integer dim in cohort.mod_outs",
                   match=r"config.cohort.mod_outs\[0\]: expected cohort dims: integers, got "
                   r"\(0, 60.5, 120\). Replace \[60.5\]"):
        inputs.validate_config(config)
    config = mf_configs.get_config("setting_2_2")
    config.cohort.head_hiddens = (300, 200.5)
    with bad_input("Meta Fusion config: a non-integer cohort.head_hiddens width",
                   match=r"config.cohort.head_hiddens: expected head hidden widths: integers >= "
                   r"1, got \(300, 200.5\)"):
        inputs.validate_config(config)
    config = mf_configs.get_config("setting_1_1")
    config.cohort.mod_hiddens = ((256,), (25.6,))
    with bad_input("Meta Fusion config: a non-integer cohort.mod_hiddens width",
                   match=r"config.cohort.mod_hiddens\[1\]: expected encoder hidden widths"):
        inputs.validate_config(config)


# ----------------------------------------------------------------- 10: too few rows


def test_simulator_data_n_below_the_minimum():
    config = _config()
    config.data.n = 10
    with bad_input("Meta Fusion config: simulator data.n too small for the splits",
                   match=r"config.data.n: expected 0 or at least 27 rows .* got 10. 10 rows split "
                   r"into \(train, val, test\) = \(6, 2, 2\); set config.data.n >= 27"):
        inputs.validate_config(config)
    config.data.n = 27                                     # 16 / 5 / 6 rows: accepted
    assert inputs.resolve(config, None, [1])[1][0].sizes == (16, 5, 6)
    with bad_input("Meta Fusion data: make_synthetic n below the minimum rows",
                   match=r"simulator setting_1_1 \(n=26\): \(train, val, test\) = \(16, 4, 6\) "
                   r"rows, below the minimum \(10, 5, 5\).*at least 27 rows"):
        simulator.make_synthetic("setting_1_1", seed=1, n=26)


def test_own_arrays_below_the_minimum():
    assert container.min_split_rows(10) == (20, 5, 5)
    MultiModalData.from_arrays(*_arrays(22), task="regression")         # 12 / 5 / 5
    with bad_input("Meta Fusion data: from_arrays rows below the split minimum",
                   match=r"from_arrays \(arrays\): \(train, val, test\) = \(6, 2, 2\) rows, below "
                   r"the minimum \(10, 5, 5\) that Meta Fusion trains and reports on \(train >= "
                   r"10, val and test >= 5\); fractions \(0.6, 0.2, 0.2\) of 10 rows: pass at "
                   r"least 22 rows or other fractions."):
        MultiModalData.from_arrays(*_arrays(10), task="regression")
    with bad_input("Meta Fusion data: classification train split below 2 rows per class",
                   match=r"\(train, val, test\) = \(18, 6, 6\) rows, below the minimum \(20, 5, 5"
                   r"\).*train >= max\(10, 2 per class x 10 classes\).*at least 34 rows"):
        MultiModalData.from_arrays(*_arrays(30, "classification", classes=10),
                                   task="classification")
    tiny = MultiModalData.from_arrays(*_arrays(60), task="regression")
    tiny = tiny._replace(**{s: Split(tuple(x[:k] for x in getattr(tiny, s).xs),
                                     getattr(tiny, s).y[:k]) for s, k in
                            (("train", 6), ("val", 2), ("test", 2))})
    with bad_input("Meta Fusion data: hand-built splits below the minimum rows",
                   match=r"data \(arrays\): \(train, val, test\) = \(6, 2, 2\) rows, below the "
                   r"minimum \(10, 5, 5\)"):
        inputs.resolve(mf_configs.get_config("default"), tiny, [0])


def test_mfeat_files_below_the_minimum(tmp_path):
    n, labels = 20, np.arange(20) % 10
    for v in ("fou", "kar"):
        d = MFEAT_VIEWS[v]
        rows = np.concatenate([RNG.normal(size=(n, d)), labels[:, None]], 1)
        np.savetxt(tmp_path / f"mfeat-{v}.csv", rows, delimiter=",", comments="",
                   header=",".join([str(i) for i in range(d)] + ["0"]), fmt="%.6g")
    with bad_input("Meta Fusion data: mfeat files with too few rows",
                   match=r"mfeat \(.*\): \(train, val, test\) = \(12, 4, 4\) rows, below the "
                   r"minimum \(20, 5, 5\).*at least 34 rows"):
        load_mfeat(str(tmp_path), views=("fou", "kar"))
