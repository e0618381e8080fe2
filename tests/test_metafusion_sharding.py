"""Meta Fusion on a device mesh (8 fake CPU devices): the sharded stacked program equals one
device, seeds are padded and dropped, members split with their all-gather, and a checkpoint
written on one mesh resumes on another to the same results."""
import os
import re

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache
from reliability import bad_input

from metafusion_jax.metafusion import inputs, placement, program, train
from metafusion_jax.training.checkpoints import RunCheckpoints
from test_metafusion_train import _comparable, tiny_config

pytestmark = pytest.mark.usefixtures("fast_compile_module")



def _spec(x, n):
    """The first n entries of x's PartitionSpec, trailing Nones written out (P("runs") ==
    P("runs", None, None))."""
    spec = tuple(x.sharding.spec)
    return (spec + (None,) * n)[:n]

def _config(num_seeds, mod_outs=((0, 4), (0, 400))):
    config = tiny_config()
    config.num_seeds, config.cohort.mod_outs = num_seeds, mod_outs
    config.report_both_b1 = False
    config.baselines.run = config.baselines.coop = False
    return config


def _schedule(config, place):
    seeds = [int(config.seed) + s for s in range(int(config.num_seeds))]
    config, datas = inputs.resolve(config, None, seeds)
    run = train.build_run(config, datas, seeds, placement=place)
    kwargs = dict(train.schedule_kwargs(run), predict=None)   # (predictions: fewer compiles)
    return run, program.run_schedule(run.cohort.program, run.cohort.step, run.params0,
                                     run.cohort.data, config.rho_list, **kwargs)


def _assert_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)


M4 = ((0, 4, 8, 16, 500), (0,))          # 4 members (the all-zeros combination is skipped)


@pytest.fixture(scope="module")
def one_device():
    """The reference: 3 seeds, 4 members on one device."""
    return _schedule(_config(3, M4), placement.single_device(3))[1]


@pytest.mark.parametrize("spec, member_split", [
    ((("runs", 4),), False), ((("runs", 2), ("members", 2)), True),
    ((("runs", 2), ("rhos", 2)), False)])
def test_sharded_program_equals_one_device(one_device, spec, member_split):
    """3 seeds padded to 4 over "runs" (and the 4 members split in two, or the 2 positive rho
    runs split in two): the 3 real seeds equal one device; seeds and rho runs need no
    communication, split members one all-gather per step."""
    place = placement.make_placement(spec, 3, jax.devices()[:4])
    assert (place.n_seeds, place.padded, place.mesh.devices.size) == (3, 4, 4)
    run, sharded = _schedule(_config(3, M4), place)
    # Created sharded: the first head layer's params [S_pad, M, W, H] split over "runs".
    w = run.params0["head"][0]["w"]
    assert w.shape[0] == 4 and w.sharding.spec[0] == "runs"
    assert {s.data.shape[0] for s in w.addressable_shards} == {4 // place.axis("runs")}
    assert sharded.result.best_val.shape == (3, 2, 4)          # real seeds only
    _assert_close(sharded.result, one_device.result)
    np.testing.assert_array_equal(sharded.rho_star_index, one_device.rho_star_index)
    np.testing.assert_array_equal(sharded.weights, one_device.weights)
    prog, p0 = run.cohort.program, run.params0
    p, o = program.stage_init(p0, jax.vmap(run.cohort.step.init_opt)(p0), 1, warm=None)
    state = place.jit(prog.init_seeds)(p, o)
    split = _spec(state.params["head"][0]["w"], 3)
    assert split == (("runs", None, "members") if member_split else ("runs", None, None))
    text = jax.jit(prog.run_epochs_seeds).lower(
        state, run.cohort.data, place.replicate(np.float32([0.0])),
        place.put(np.ones((3, 1, 4), np.float32)),
        place.put(jax.random.split(jax.random.key(0), 3)[:, None]), 0, 1).compile().as_text()
    collectives = re.findall(r"all-gather|all-reduce|collective-permute|all-to-all", text)
    assert ("all-gather" in collectives) if member_split else not collectives
    # The positive-rho stage (R = 2): its state, weights and keys split R over "rhos".
    p, o = program.stage_init(p0, jax.vmap(run.cohort.step.init_opt)(p0), 2, warm=None)
    state = place.jit(prog.init_seeds)(place.put_stage(p, 2), place.put_stage(o, 2))
    rho_split = "rhos" if place.axis("rhos") == 2 else None
    assert _spec(state.params["head"][0]["w"], 2) == ("runs", rho_split)
    assert _spec(state.val_curve, 2) == ("runs", rho_split)
    keys = place.put_stage(jax.random.split(jax.random.key(0), 6).reshape(3, 2))
    assert jax.random.key_data(keys).sharding.spec[:2] == ("runs", rho_split)
    if rho_split:
        text = jax.jit(prog.run_epochs_seeds).lower(
            state, run.cohort.data, place.replicate(np.float32([0.1, 0.5])),
            place.put_stage(np.ones((3, 2, 4), np.float32), 2), keys, 0, 1).compile().as_text()
        assert not re.findall(r"all-gather|all-reduce|collective-permute|all-to-all", text)


def test_bad_mesh_and_cache_values_are_refused():
    with bad_input("Meta Fusion: config.mesh without a 'runs' axis", match="has no 'runs' axis"):
        placement.make_placement((("data", -1),), 2)
    with bad_input("Meta Fusion: config.mesh sizes that do not fit the devices",
                   match=r"needs a multiple of 3 devices, but 8 are visible"):
        placement.make_placement((("runs", 3), ("members", -1)), 2)
    with bad_input("Meta Fusion: config.compile_cache_dir not a string",
                   match="compile_cache_dir must be a folder path"):
        placement.compile_cache_dir(0)


def test_checkpoint_of_one_mesh_resumes_on_another(tmp_path, monkeypatch):
    """Killed inside "mutual" on 8 devices (1 seed padded to 8), resumed on 2 devices with the
    2 positive rho runs split over "rhos": the same results as an uninterrupted 1-device run;
    the checkpoint holds the real seed only."""
    config = _config(1)
    config.checkpoint_every_epochs = 1
    reference = train.train_and_evaluate(config, str(tmp_path / "ref"))
    real_save = RunCheckpoints.save_latest

    def save(self, step, state, meta):
        real_save(self, step, state, meta)
        if (meta["progress"] or {}).get("stage") == "mutual":
            self.latest.wait_until_finished()
            raise KeyboardInterrupt("killed inside mutual")
    monkeypatch.setattr(RunCheckpoints, "save_latest", save)
    config.mesh = (("runs", 8), ("members", 1))
    workdir = str(tmp_path / "moved")
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, workdir)
    monkeypatch.undo()
    saved = RunCheckpoints(workdir)
    shapes = {a.shape[0] for a in jax.tree.leaves(saved.restore_latest(None).state["progress"])}
    saved.close()
    assert shapes == {1}
    config.mesh = (("runs", -1), ("rhos", 2), ("members", 1))   # 1 seed: 2 of the 8 devices
    place = placement.make_placement(config.mesh, 1)
    assert dict(place.mesh.shape) == {"runs": 1, "rhos": 2, "members": 1}
    resumed = train.train_and_evaluate(config, workdir)
    assert not os.path.exists(os.path.join(workdir, "stale_logs"))
    a, b = _comparable(resumed), _comparable(reference)
    assert a.keys() == b.keys() and a["rho_star"] == b["rho_star"]
    for key, value in b["test"].items():
        assert a["test"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_compile_cache_folder_and_switch(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert placement.compile_cache_dir("auto") == str(tmp_path / "xdg" / "metafusion_jax" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert placement.compile_cache_dir("auto") == str(
        tmp_path / "home" / ".cache" / "metafusion_jax" / "jax")
    assert placement.compile_cache_dir("") == ""
    assert placement.compile_cache_dir("~/c") == str(tmp_path / "home" / "c")
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    previous = {n: getattr(jax.config, n) for n in names}
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert placement.use_compile_cache("") == ""                      # off: nothing set
        assert jax.config.jax_compilation_cache_dir is None
        assert placement.use_compile_cache(str(tmp_path / "c1")) == str(tmp_path / "c1")
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
        # A folder the process already uses wins (a test fixture, the user's own setting).
        assert placement.use_compile_cache(str(tmp_path / "c2")) == str(tmp_path / "c1")
    finally:
        for name, value in previous.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()
