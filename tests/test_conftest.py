"""The test harness itself: fake devices, strict rank promotion, the fast_compile fixture."""
import jax
import jax.numpy as jnp
import pytest


def test_eight_fake_cpu_devices():
    assert jax.device_count() == 8


def test_rank_promotion_raises():
    with pytest.raises(ValueError):
        _ = jnp.ones((3,)) + jnp.ones((2, 3))


def test_fast_compile_fixture_toggles_flag(fast_compile):
    assert jax.config.values["jax_disable_most_optimizations"] is True
