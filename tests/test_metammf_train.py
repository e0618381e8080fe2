"""End-to-end tests of the MetaMMF training loop (tiny synthetic data, fast compiles)."""
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.data.rec import synthetic as synthetic_rec
from metafusion_jax.data.rec.interactions import InteractionData
from metafusion_jax.metammf import inputs
from metafusion_jax.metammf import models
from metafusion_jax.metammf import train
from metafusion_jax.training import checkpoints
from reliability import bad_input

# A persistent compile cache shared by this module's runs (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("persistent_compile_cache")

METRIC_KEYS = {f"{m}@{k}" for m in ("precision", "recall", "ndcg", "hr", "map") for k in (10, 20)}


def smoke_config(**overrides):
    config = metammf_configs.get_config("smoke")
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


def read_jsonl(workdir):
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def make_fake_mf(trace_log, frozen=False, name="fake_mf"):
    """ModelSpec of a tiny MF recommender whose embed records every trace (train flag).

    frozen: the embeddings ignore the gradient (zero grads), so val metrics never change.
    Its one option, id_dim, would live in config.model.<name> (absent: the default 4).
    """

    def factory(*, n_users, n_items, feature_dim, modality_slices=None, id_dim=4):
        del modality_slices

        def init(key):
            k1, k2, k3 = jax.random.split(key, 3)
            return {"user": 0.1 * jax.random.normal(k1, (n_users, id_dim)),
                    "item": 0.1 * jax.random.normal(k2, (n_items, id_dim)),
                    "proj": 0.1 * jax.random.normal(k3, (feature_dim, id_dim))}

        def embed(params, inputs, key, train):
            del key
            trace_log.append(train)
            if frozen:
                params = jax.lax.stop_gradient(params)
            return params["user"], params["item"] + inputs["features"] @ params["proj"]

        return models.Recommender(init, embed)

    return models.ModelSpec(factory, ("id_dim",), name)


def test_smoke_run_writes_results_logs_and_events(tmp_path, fast_compile):
    workdir = str(tmp_path / "run")
    config = smoke_config(num_epochs=2)
    results = train.train_and_evaluate(config, workdir)

    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(results))
    assert set(on_disk) == {"model", "dataset", "best_epoch", "val", "test", "timing", "config",
                            "run_info"}
    assert on_disk["model"] == "metammf"
    assert on_disk["dataset"] == "synthetic_microvideo"
    assert set(on_disk["val"]) == METRIC_KEYS and set(on_disk["test"]) == METRIC_KEYS
    assert set(on_disk["timing"]) == {"total_s", "per_epoch_s", "per_step_s", "eval_s",
                                      "compile_s"}
    assert all(v > 0 for v in on_disk["timing"].values())
    assert on_disk["config"] == json.loads(json.dumps(config.to_dict()))
    for split in ("val", "test"):
        assert all(0.0 <= v <= 1.0 for v in on_disk[split].values())

    rows = read_jsonl(workdir)
    train_rows = [r for r in rows if "train/loss" in r]
    val_rows = [r for r in rows if "val/recall@20" in r]
    test_rows = [r for r in rows if "test/recall@20" in r]
    assert [r["train/epoch"] for r in train_rows] == [1.0, 2.0]
    assert len(val_rows) == 2 and len(test_rows) == 1
    # The reported val metrics are those logged at the best epoch, and that epoch has the best R@20.
    best_row = val_rows[on_disk["best_epoch"] - 1]
    assert on_disk["val"]["recall@20"] == pytest.approx(best_row["val/recall@20"], abs=1e-7)
    assert best_row["val/recall@20"] == max(r["val/recall@20"] for r in val_rows)
    assert test_rows[0]["test/ndcg@10"] == pytest.approx(on_disk["test"]["ndcg@10"], abs=1e-7)
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "best"))


def test_kill_and_resume_matches_uninterrupted_run(tmp_path, fast_compile, monkeypatch):
    config = smoke_config(num_epochs=3, eval_every=1)
    straight = train.train_and_evaluate(config, str(tmp_path / "straight"))

    resumed_dir = str(tmp_path / "resumed")
    paused = train.train_and_evaluate(smoke_config(num_epochs=3, eval_every=1,
                                                   max_epochs_this_run=1), resumed_dir)
    assert paused == {"status": "paused", "epoch": 1}
    assert not os.path.exists(os.path.join(resumed_dir, "results.json"))
    paused = train.train_and_evaluate(smoke_config(num_epochs=3, eval_every=1,
                                                   max_epochs_this_run=1), resumed_dir)
    assert paused == {"status": "paused", "epoch": 2}
    resumed = train.train_and_evaluate(config, resumed_dir)

    assert resumed["best_epoch"] == straight["best_epoch"]
    assert resumed["val"] == straight["val"]
    assert resumed["test"] == straight["test"]
    losses = [[r["train/loss"] for r in read_jsonl(d) if "train/loss" in r]
              for d in (str(tmp_path / "straight"), resumed_dir)]
    assert losses[0] == losses[1] and len(losses[0]) == 3

    # Killed between saving `best` and `latest` of the best epoch: the resumed run redoes it.
    killed_dir = str(tmp_path / "killed")
    real_save_latest = checkpoints.RunCheckpoints.save_latest

    def save_latest_then_die(self, step, state, meta):
        if meta["epoch"] == straight["best_epoch"]:
            raise KeyboardInterrupt("killed")
        real_save_latest(self, step, state, meta)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints.RunCheckpoints, "save_latest", save_latest_then_die)
        with pytest.raises(KeyboardInterrupt):
            train.train_and_evaluate(config, killed_dir)
    saved = {name: [int(d) for d in os.listdir(os.path.join(killed_dir, "checkpoints", name))
                    if d.isdigit()] for name in ("best", "latest")}
    assert saved["best"] > saved["latest"]  # the kill hit the window this case is about
    again = train.train_and_evaluate(config, killed_dir)
    assert (again["best_epoch"], again["val"], again["test"]) == (
        straight["best_epoch"], straight["val"], straight["test"])


def test_resume_refuses_a_different_config(tmp_path, fast_compile):
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(smoke_config(max_epochs_this_run=1), workdir)
    with pytest.raises(ValueError, match="learning_rate: saved 0.001, now 0.003"):
        train.train_and_evaluate(smoke_config(learning_rate=3e-3), workdir)
    with pytest.raises(ValueError, match="model.fusion: saved 'dense', now 'cp'"):
        train.train_and_evaluate(smoke_config(**{"model.fusion": "cp"}), workdir)
    with pytest.raises(ValueError, match="model.lattice.knn_k: saved 10, now 3"):
        train.train_and_evaluate(smoke_config(**{"model.lattice.knn_k": 3}), workdir)
    # Run-length fields may change: the run goes on to its new end.
    results = train.train_and_evaluate(smoke_config(num_epochs=2), workdir)
    assert results["best_epoch"] in (1, 2)


def test_non_finite_loss_raises_and_keeps_checkpoints(tmp_path, fast_compile, monkeypatch):
    workdir = str(tmp_path / "run")
    config = smoke_config(num_epochs=3, max_epochs_this_run=1)
    train.train_and_evaluate(config, workdir)
    best_dir = os.path.join(workdir, "checkpoints", "best")
    best_before = sorted(os.listdir(best_dir))
    latest_before = sorted(os.listdir(os.path.join(workdir, "checkpoints", "latest")))

    real_make_step = train.make_train_step

    def nan_loss_step(model, tx, constrain_rows=None):  # same data and config (so the run resumes), a NaN loss
        step = real_make_step(model, tx, constrain_rows)

        def wrapped(params, opt_state, inputs, batch, key):
            params, opt_state, loss = step(params, opt_state, inputs, batch, key)
            return params, opt_state, loss * jnp.nan

        return wrapped

    monkeypatch.setattr(train, "make_train_step", nan_loss_step)
    with pytest.raises(FloatingPointError, match="epoch 2 training loss"):
        train.train_and_evaluate(smoke_config(num_epochs=3), workdir)
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    assert sorted(os.listdir(best_dir)) == best_before
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints", "latest"))) == latest_before


def test_train_step_is_traced_once(tmp_path, fast_compile, monkeypatch):
    trace_log = []
    monkeypatch.setitem(models.MODELS, "fake_mf", make_fake_mf(trace_log))
    config = smoke_config(num_epochs=3, batch_size=64)
    config.model.name = "fake_mf"
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    rows = read_jsonl(str(tmp_path / "run"))
    assert rows[-1]["step"] > 3 * 2  # several steps per epoch, 3 epochs
    assert trace_log.count(True) == 1
    assert trace_log.count(False) == 1
    assert results["model"] == "fake_mf"


def test_sharded_step_matches_single_device(fast_compile):
    assert jax.device_count() == 8
    config = smoke_config()
    data, model, inputs = train.build(config)
    tx = train.make_optimizer(1e-2, 1e-4)
    step = jax.jit(train.make_train_step(model, tx))
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {"users": jnp.asarray(rng.integers(0, data.n_users, 128), jnp.int32),
             "pos": jnp.asarray(rng.integers(0, data.n_items, 128), jnp.int32),
             "neg": jnp.asarray(rng.integers(0, data.n_items, (128, 1)), jnp.int32),
             "weight": jnp.asarray((np.arange(128) < 100).astype(np.float32))}
    key = jax.random.key(3)

    single = (params, tx.init(params))
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    sharded = jax.device_put(single, rep)
    sharded_inputs = jax.device_put(inputs, rep)
    sharded_batch = jax.device_put(batch, shard)
    for i in range(3):
        p1, o1, loss1 = step(*single, inputs, batch, jax.random.fold_in(key, i))
        p8, o8, loss8 = step(*sharded, sharded_inputs, sharded_batch, jax.random.fold_in(key, i))
        loss8.block_until_ready()
        single, sharded = (p1, o1), (p8, o8)
        np.testing.assert_allclose(float(loss8), float(loss1), rtol=1e-5)
    assert len(p8["user"].sharding.device_set) == 8
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), p1, p8)


@pytest.mark.parametrize("n_devices", [2, 8])
def test_mesh_run_matches_single_device_run(tmp_path, fast_compile, n_devices):
    """The real model (GCN backbone: sharded fusion rows, graph, batch) on a mesh == 1 device."""
    runs = {}
    for n in (1, n_devices):
        runs[n] = train.train_and_evaluate(
            smoke_config(**{"num_epochs": 2, "mesh": (("data", n),)}), str(tmp_path / str(n)))
    losses = [[r["train/loss"] for r in read_jsonl(str(tmp_path / str(n))) if "train/loss" in r]
              for n in (1, n_devices)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for split in ("val", "test"):
        for name, value in runs[1][split].items():
            np.testing.assert_allclose(runs[n_devices][split][name], value, atol=1e-6)


def test_early_stopping_after_patience(tmp_path, fast_compile, monkeypatch):
    # A frozen model: val R@20 never improves after the first evaluation.
    monkeypatch.setitem(models.MODELS, "frozen_mf",
                        make_fake_mf([], frozen=True, name="frozen_mf"))
    workdir = str(tmp_path / "run")
    config = smoke_config(**{"num_epochs": 10, "eval_every": 1, "patience": 2,
                             "weight_decay": 0.0, "model.name": "frozen_mf"})
    results = train.train_and_evaluate(config, workdir)
    epochs = [r["train/epoch"] for r in read_jsonl(workdir) if "train/loss" in r]
    assert epochs == [1.0, 2.0, 3.0]
    assert results["best_epoch"] == 1
    # Re-running a stopped run trains nothing more and reports the same results.
    again = train.train_and_evaluate(config, workdir)
    assert [r["train/epoch"] for r in read_jsonl(workdir) if "train/loss" in r] == epochs
    assert again["test"] == results["test"] and again["val"] == results["val"]


@pytest.mark.parametrize("field, value, match", [
    ("data.source", "csv", "config.data.source"),
    ("model.name", "ngcf", "config.model.name"),
    ("num_epochs", 0, "config.num_epochs"),
    ("eval_every", 0, "config.eval_every"),
    ("patience", -1, "config.patience"),
    ("learning_rate", 0.0, "config.learning_rate"),
    ("weight_decay", -1e-6, "config.weight_decay"),
    ("negatives", "hard", "config.negatives"),
    ("max_epochs_this_run", -1, "config.max_epochs_this_run"),
])
def test_bad_config_raises(field, value, match):
    config = smoke_config(**{field: value})
    with pytest.raises(ValueError, match=match):
        train.validate_config(config)


def test_checkpoint_restores_across_mesh_shapes(tmp_path, fast_compile):
    """Epochs 1-2 on 8 devices, 3 on 2, 4 on 1: the same losses and metrics as 1 device."""
    straight = train.train_and_evaluate(smoke_config(mesh=(("data", 1),)), str(tmp_path / "one"))
    workdir = str(tmp_path / "moved")
    for n, stop in ((8, 2), (2, 1), (1, 0)):
        out = train.train_and_evaluate(smoke_config(mesh=(("data", n),),
                                                    max_epochs_this_run=stop), workdir)
    assert out["best_epoch"] == straight["best_epoch"]
    losses = [[r["train/loss"] for r in read_jsonl(d) if "train/loss" in r]
              for d in (str(tmp_path / "one"), workdir)]
    assert len(losses[1]) == 4
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for name, value in straight["test"].items():
        np.testing.assert_allclose(out["test"][name], value, atol=1e-6)


def test_mesh_needs_divisible_batch():
    with bad_input("MetaMMF config: batch size not a multiple of the mesh's data axis",
                   match=r"config.batch_size must be a multiple of the 8 devices"):
        train.validate_config(smoke_config(batch_size=100))
    with bad_input("MetaMMF config: a mesh larger than the visible devices",
                   match=r"needs 16 devices, but 8 are visible"):
        train.validate_config(smoke_config(mesh=(("data", 16),)))


# ---- your own data: InteractionData.from_pairs and train_and_evaluate(data=...) ----------------

def own_arrays(**overrides):
    """Arrays of a tiny dataset (from the synthetic generator) as a user would hold them."""
    data, _ = synthetic_rec.make_synthetic_microvideo(
        30, 20, 300, modality_dims={"visual": 6, "textual": 4}, seed=3)
    fields = dict(n_users=data.n_users, n_items=data.n_items, train=data.train, val=data.val,
                  test=data.test, features=dict(data.features), name="mine")
    fields.update(overrides)
    return fields


def test_own_data_kill_resume_matches_straight_and_refuses_other_data(tmp_path, fast_compile):
    data = InteractionData.from_pairs(**own_arrays())
    config = smoke_config(num_epochs=2, eval_every=1)
    config.data.source = "mmgcn"  # not used when data is given (a dir that does not exist)
    config.data.dir = str(tmp_path / "nowhere")
    straight = train.train_and_evaluate(config, str(tmp_path / "straight"), data=data)
    assert straight["dataset"] == "mine"

    workdir = str(tmp_path / "resumed")
    paused = train.train_and_evaluate(smoke_config(num_epochs=2, eval_every=1,
                                                   max_epochs_this_run=1), workdir, data=data)
    assert paused == {"status": "paused", "epoch": 1}
    other = data._replace(features={k: v + np.float32(1.0) for k, v in data.features.items()})
    with pytest.raises(ValueError, match=r"a run on different data \(data.fingerprint: saved "
                                         r"'U=30 I=20 train="):
        train.train_and_evaluate(config, workdir, data=other)
    resumed = train.train_and_evaluate(config, workdir, data=data)
    assert (resumed["best_epoch"], resumed["val"], resumed["test"]) == (
        straight["best_epoch"], straight["val"], straight["test"])


def _bad_feature(value):
    feats = own_arrays()["features"]
    x = feats["visual"].copy()
    x[2, 1] = value
    return {**feats, "visual": x}


BAD_OWN_DATA = [
    (dict(train=np.array([[30, 0]] + [[u, 0] for u in range(30)])),
     r"train pairs: user ids must lie in \[0, 30\) \(n_users=30\), got range \[0, 30\]"),
    (dict(val=np.array([[0, 20]])),
     r"val pairs: item ids must lie in \[0, 20\) \(n_items=20\), got range \[20, 20\]"),
    (dict(test=np.zeros((0, 2), np.int32)), r"test pairs are empty"),
    (dict(features=_bad_feature(np.nan)), r"features\['visual'\] has 1 NaN/inf values in 1 items"),
    (dict(features=_bad_feature(np.inf)), r"features\['visual'\] has 1 NaN/inf values"),
    (dict(features={"visual": np.zeros((19, 6), np.float32)}),
     r"features\['visual'\] has 19 rows but n_items is 20"),
]


@pytest.mark.parametrize("overrides, match", BAD_OWN_DATA)
def test_from_pairs_rejects_bad_input(overrides, match):
    with pytest.raises(ValueError, match=r"InteractionData.from_pairs\(name='mine'\): " + match):
        InteractionData.from_pairs(**own_arrays(**overrides))


@pytest.mark.parametrize("overrides, match", BAD_OWN_DATA)
def test_data_argument_is_validated_before_anything_is_written(tmp_path, overrides, match):
    raw = InteractionData(**own_arrays(**overrides))  # not validated by the caller
    workdir = str(tmp_path / "run")
    with pytest.raises(ValueError, match=r"train_and_evaluate\(data=...\): " + match):
        train.train_and_evaluate(smoke_config(), workdir, data=raw)
    assert not os.path.exists(workdir)


@pytest.mark.parametrize("field, value, match", [
    ("data.pca_dims", (("acoustic", 2),),
     r"config.data.pca_dims names modalities \['acoustic'\] that the data 'mine' lacks \(its "
     r"modalities: \['visual', 'textual'\]\)"),
    ("data.pca_dims", (("visual", 7),),
     r"config.data.pca_dims\['visual'\]=7 must lie in \[1, min\(D_k=6, I=20\)\]"),
    ("model.lightgcn.layers", 2, r"config.model.lightgcn.layers is not an option"),
])
def test_config_contradicting_the_data_raises_before_anything_is_written(tmp_path, field, value,
                                                                         match):
    data = InteractionData.from_pairs(**own_arrays())
    config = smoke_config(**{field: value, "model.name": "lightgcn"})
    workdir = str(tmp_path / "run")
    with pytest.raises(ValueError, match=match):
        train.train_and_evaluate(config, workdir, data=data)
    assert not os.path.exists(workdir)


def test_pca_of_absent_modalities_is_dropped_when_asked():
    data = InteractionData.from_pairs(**own_arrays())
    config = smoke_config(**{"data.pca_dims": (("acoustic", 2), ("visual", 3)),
                             "data.pca_skip_absent": True})
    assert inputs.pca_dims_for(config.data, data) == {"visual": 3}
    _, _, built = inputs.build(config, data)
    assert built["features"].shape == (20, 3 + 4)


def test_data_argument_must_be_interaction_data(tmp_path):
    with pytest.raises(ValueError, match="data must be an InteractionData"):
        train.train_and_evaluate(smoke_config(), str(tmp_path / "run"), data=own_arrays())
