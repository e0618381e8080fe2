"""Tests of metammf/placement.py on 8 fake CPU devices: what is split, and the sharded step ==
the single-device step (the real GCN model through `train.prepare`)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.configs import metammf as metammf_configs
from metafusion_jax.metammf import placement as placement_lib
from metafusion_jax.metammf import train
from metafusion_jax.training import mesh as mesh_lib
from reliability import bad_input


def placement_of(n):
    return placement_lib.make_placement(mesh_lib.make_mesh((("data", n),)))


def test_init_state_splits_divisible_row_tables_only():
    p8 = placement_of(8)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"user": jax.random.normal(k1, (16, 3)), "item": jax.random.normal(k2, (13, 3)),
                "w": jnp.ones((3, 3))}

    state, shardings = placement_lib.init_state(init, jax.random.key(0), p8, {16, 13})
    assert state["user"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert state["user"].addressable_shards[0].data.shape == (2, 3)
    assert state["item"].sharding.spec == jax.sharding.PartitionSpec()  # 13 rows: replicated
    assert shardings["w"].spec == jax.sharding.PartitionSpec()
    # The same values as an unplaced init.
    jax.tree.map(np.testing.assert_array_equal, state, jax.jit(init)(jax.random.key(0)))


def test_put_batch_and_put_host_give_the_host_values():
    p8 = placement_of(8)
    batch = {"users": np.arange(16, dtype=np.int32), "w": np.linspace(0, 1, 16)}
    placed = placement_lib.put_batch(batch, p8)
    assert placed["users"].sharding.spec == jax.sharding.PartitionSpec("data")
    np.testing.assert_array_equal(np.asarray(placed["users"]), batch["users"])
    host = {"a": np.arange(12.0).reshape(4, 3)}
    out = placement_lib.put_host(host, {"a": p8.replicated})
    np.testing.assert_array_equal(np.asarray(out["a"]), host["a"])


def test_constrain_rows_keeps_values_for_uneven_rows():
    p8 = placement_of(8)
    x = jnp.arange(13 * 2, dtype=jnp.float32).reshape(13, 2)
    y = jax.jit(lambda a: placement_lib.constrain_rows(a, p8) * 2.0)(x)
    np.testing.assert_array_equal(np.asarray(y), 2.0 * np.asarray(x))


def test_mesh_without_data_axis():
    with bad_input("MetaMMF config: a mesh without a 'data' axis", match="must have a 'data' axis"):
        placement_lib.make_placement(mesh_lib.make_mesh((("runs", -1),)))


def _steps(n, steps=3):
    config = metammf_configs.get_config("smoke")
    config.mesh = (("data", n),)
    run = train.prepare(config)
    step = jax.jit(run.step_fn)
    params, opt = run.state["params"], run.state["opt_state"]
    batches = run.sampler.epoch(run.keys[0], 1)
    losses = []
    for b in range(steps):
        batch = placement_lib.put_batch(
            {k: getattr(batches, k)[b] for k in ("users", "pos", "neg", "weight")}, run.placement)
        params, opt, loss = step(params, opt, run.inputs, batch, jax.random.fold_in(run.keys[1], b))
        losses.append(float(loss))
    return run, params, losses


@pytest.mark.usefixtures("fast_compile")
def test_sharded_step_matches_single_device_step():
    _, p1, l1 = _steps(1)
    run8, p8, l8 = _steps(8)
    # The work is split: graph neighbour rows and the batch over 8 devices.
    graph = run8.inputs["graph"]
    assert graph.nbr.sharding.spec == jax.sharding.PartitionSpec("data")
    assert len(p8["gcn"][0]["W_nbr"].sharding.device_set) == 8
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                         rtol=2e-4, atol=2e-6), p8, p1)
