"""Typed stage records: joining and replacing rho runs, the checkpoint form (through orbax)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metafusion_jax.metafusion import records
from metafusion_jax.metafusion.records import Predictions, StageRecord, WarmState
from metafusion_jax.training.checkpoints import RunCheckpoints


def _record(offset, rhos, warm=None):
    shape = (2, len(rhos), 3)  # [S, R, M]; curves [S, R, E=2, M]; predictions [S, R, M, N=4, 1]
    best = offset + np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    curve = offset + np.zeros((2, len(rhos), 2, 3), np.float32)
    preds = Predictions(*[offset + i + np.ones(shape + (4, 1), np.float32) for i in range(3)])
    return StageRecord(np.asarray(rhos, np.float64), best, curve, curve + 1, preds, warm)


def test_join_and_replace_rho():
    indep, mutual, other = _record(0.0, [0.0]), _record(100.0, [1.0, 3.0]), _record(-5.0, [1.0])
    main = records.join(indep, mutual)
    assert main.rhos.tolist() == [0.0, 1.0, 3.0] and main.best_val.shape == (2, 3, 3)
    assert main.preds.test.shape == (2, 3, 3, 4, 1) and main.val_curve.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(main.best_val[:, 1:], mutual.best_val)
    np.testing.assert_array_equal(main.preds.val[:, :1], indep.preds.val)
    swapped = records.replace_rho(main, 1, other)
    np.testing.assert_array_equal(swapped.best_val[:, 1], other.best_val[:, 0])
    np.testing.assert_array_equal(swapped.preds.train[:, 1], other.preds.train[:, 0])
    np.testing.assert_array_equal(swapped.best_val[:, [0, 2]], main.best_val[:, [0, 2]])
    assert main.best_val[0, 1, 0] == 100.0  # the input is not modified
    assert records.join(indep, None).best_val is indep.best_val
    with pytest.raises(ValueError, match="rho 3.0"):
        records.replace_rho(main, 2, other)


def test_pack_and_unpack_through_orbax(tmp_path):
    params = {"head": [{"w": jnp.ones((2, 1, 3, 4)), "b": jnp.zeros((2, 1, 3, 4))}] * 6}
    opt = jax.vmap(jax.vmap(jax.vmap(optax.adam(1e-3).init)))(params)   # > 10 leaves in all
    warm = WarmState(params, opt)
    record = _record(0.5, [0.0], warm=jax.tree.map(np.asarray, warm))
    state = records.RunState(params, opt, params, opt, jnp.ones((2, 1, 3)), jnp.zeros((2, 1, 2, 3)),
                             jnp.zeros((2, 1, 2, 3)))
    ckpt = RunCheckpoints(str(tmp_path))
    ckpt.save_latest(1, {"done": {"indep": records.pack_record(record)},
                         "progress": records.pack_tree(state)}, {})
    ckpt.close()
    ckpt = RunCheckpoints(str(tmp_path))
    back = ckpt.restore_latest(None).state
    ckpt.close()
    restored = records.unpack_record(back["done"]["indep"], warm)
    jax.tree.map(np.testing.assert_array_equal, restored, record)
    assert isinstance(restored.warm.opt_state[0], optax.ScaleByAdamState)
    jax.tree.map(np.testing.assert_array_equal, records.unpack_tree(back["progress"], state), state)
    no_warm = records.unpack_record(records.pack_record(record._replace(warm=None, preds=None)))
    assert no_warm.warm is None and no_warm.preds is None
    with pytest.raises(ValueError, match="another cohort"):
        records.unpack_tree(back["progress"], params)
