"""End-to-end tests of the MetaMMF training loop (tiny synthetic data, fast compiles)."""
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.metammf import models
from metafusion_jax.metammf import train
from metafusion_jax.training import checkpoints

@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """A persistent compile cache for this file: the runs below compile the same programs, and
    every train_and_evaluate call jits fresh functions (in-memory caches miss)."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    previous = {n: getattr(jax.config, n) for n in names}
    for name, value in zip(names, (str(tmp_path_factory.mktemp("jax_cache")), 0.0, -1)):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield
    for name, value in previous.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


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


def make_fake_mf(trace_log, frozen=False):
    """A tiny MF recommender whose embed records every trace (train flag) in `trace_log`.

    frozen: the embeddings ignore the gradient (zero grads), so val metrics never change.
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

    return factory


def test_smoke_run_writes_results_logs_and_events(tmp_path, fast_compile):
    workdir = str(tmp_path / "run")
    config = smoke_config(num_epochs=2)
    results = train.train_and_evaluate(config, workdir)

    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(results))
    assert set(on_disk) == {"model", "dataset", "best_epoch", "val", "test", "timing", "config"}
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

    real_loader = train.LOADERS["synthetic"]

    def exploding(data_cfg):
        data = real_loader(data_cfg)
        return data._replace(features={k: v * np.float32(1e30) for k, v in data.features.items()})

    monkeypatch.setitem(train.LOADERS, "synthetic", exploding)
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


def test_data_parallel_run_matches_single_device_run(tmp_path, fast_compile, monkeypatch):
    monkeypatch.setitem(models.MODELS, "fake_mf", make_fake_mf([]))
    one = train.train_and_evaluate(smoke_config(**{"num_epochs": 2, "model.name": "fake_mf"}),
                                   str(tmp_path / "one"))
    eight = train.train_and_evaluate(
        smoke_config(**{"num_epochs": 2, "model.name": "fake_mf", "data_parallel": True}),
        str(tmp_path / "eight"))
    losses = [[r["train/loss"] for r in read_jsonl(str(tmp_path / d)) if "train/loss" in r]
              for d in ("one", "eight")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    assert eight["best_epoch"] == one["best_epoch"]


def test_early_stopping_after_patience(tmp_path, fast_compile, monkeypatch):
    # A frozen model: val R@20 never improves after the first evaluation.
    monkeypatch.setitem(models.MODELS, "frozen_mf", make_fake_mf([], frozen=True))
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


def test_data_parallel_needs_divisible_batch():
    with pytest.raises(ValueError, match="config.batch_size"):
        train.validate_config(smoke_config(batch_size=100, data_parallel=True))
