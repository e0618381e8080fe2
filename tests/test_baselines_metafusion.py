"""Tests for the Meta Fusion baselines: benchmark cohort layout, Coop losses vs numpy, Coop training."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metafusion import baselines as B
from metafusion_jax.metafusion.cohort import make_cohort_spec
from metafusion_jax.metafusion.program import make_program


def test_benchmark_spec_matches_reference_cohort_for_two_modalities():
    spec = B.benchmark_spec((5, 4))
    ref = make_cohort_spec([[5, 0], [4, 0]], [5, 4])
    assert spec.dims == ref.dims == ((5, 4), (5, 0), (0, 4))
    assert spec.modes == ref.modes and spec.widths == ref.widths
    assert B.benchmark_spec((3, 2, 6)).dims == ((3, 2, 6), (3, 0, 0), (0, 2, 0), (0, 0, 6))


def test_benchmark_predictions_late_fusion_is_unimodal_mean():
    F = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    out = B.benchmark_predictions(F)
    np.testing.assert_array_equal(out["early_fusion"], F[0])
    np.testing.assert_array_equal(out["modality_2"], F[2])
    np.testing.assert_allclose(out["late_fusion"], (F[1] + F[2]) / 2)


@pytest.mark.parametrize("b17", [True, False])
def test_coop_losses_and_gradients_against_numpy(b17):
    f = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5], [-2.0, 1.5, 0.25]], np.float32)  # [3, B]
    y = np.array([1.0, 2.0, -1.0], np.float32)
    mask = np.array([1.0, 1.0, 0.0], np.float32)     # last row is padding
    rho = 0.5
    e = 0.0 if b17 else 1.0
    v = slice(0, 2)
    want_task = [np.mean((f[0, v] + f[1, v] + f[2, v] - y[v]) ** 2),
                 np.mean((f[1, v] + f[2, v] + e * f[0, v] - y[v]) ** 2),
                 np.mean((f[2, v] + f[1, v] + e * f[0, v] - y[v]) ** 2)]
    want_pen = [rho / (1 - rho) * np.mean(f[0, v] ** 2), rho * np.mean((f[1, v] - f[2, v]) ** 2),
                rho * np.mean((f[2, v] - f[1, v]) ** 2)]
    task, pen = B.coop_losses(jnp.asarray(f)[:, :, None], y, mask, rho, reproduce_b17=b17)
    np.testing.assert_allclose(task, want_task, rtol=1e-6)
    np.testing.assert_allclose(pen, want_pen, rtol=1e-6)
    # Gradient of the summed loss w.r.t. f_1: only member 1's own terms (peers are stop-gradient).
    g = jax.grad(lambda F: jnp.sum(sum(B.coop_losses(F, y, mask, rho, reproduce_b17=b17))))(
        jnp.asarray(f)[:, :, None])
    resid1 = f[1, v] + f[2, v] + e * f[0, v] - y[v]
    np.testing.assert_allclose(g[1, v, 0], 2 * resid1 / 2 + rho * 2 * (f[1, v] - f[2, v]) / 2, rtol=1e-5)
    np.testing.assert_allclose(g[0, v, 0], 2 * (f[0, v] + f[1, v] + f[2, v] - y[v]) / 2
                               + rho / (1 - rho) * 2 * f[0, v] / 2, rtol=1e-5)
    np.testing.assert_array_equal(g[:, 2, 0], 0.0)


def test_coop_training_reduces_loss_and_prediction_error():
    rng = np.random.default_rng(0)
    n = 192
    x1 = rng.normal(size=(n, 5)).astype(np.float32)
    x2 = rng.normal(size=(n, 4)).astype(np.float32)
    y = (2 * x1[:, 0] + x2[:, 1] - x1[:, 2] * x2[:, 3]).astype(np.float32)
    coh = B.make_benchmark_cohort((5, 4), hidden=(16,), out_dim=1)
    step = B.make_coop_step(coh.apply, learning_rate=1e-2, reproduce_b17=False)
    params = coh.init(jax.random.key(0))
    data = {"x_train": (x1[:128], x2[:128]), "y_train": y[:128],
            "x_val": (x1[128:], x2[128:]), "y_val": y[128:]}
    before = np.asarray(step.val_task(params, data["x_val"], data["y_val"]))
    prog = make_program(step, n_train=128, batch_size=32, epochs=6)
    res = jax.jit(prog.run)(params, step.init_opt(params), data, jnp.float32(0.5), jnp.ones(3),
                            jax.random.key(1))
    assert np.all(np.asarray(res.best_val) < 0.6 * before)
    err = lambda p: float(jnp.mean((B.coop_predict(coh.apply(p, data["x_val"]))[:, 0] - y[128:]) ** 2))
    assert err(res.best_params) < 0.6 * err(params)


def test_coop_rho_filter_and_choice():
    assert B.coop_rhos([0, 0.99, 3]) == [0.0, 0.99]
    with pytest.raises(ValueError, match="rho in \\[0, 1\\)"):
        B.coop_rhos([3, 5])
    assert B.choose_coop_rho(np.array([[3.0, 1.0, 1.0], [2.0, 1.0, 1.5]])) == 1
    with pytest.raises(ValueError, match="modality_dims"):
        B.benchmark_spec(())
