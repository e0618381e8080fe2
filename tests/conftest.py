"""Test-wide JAX settings: 8 fake CPU devices and strict rank promotion.

XLA_FLAGS must be set before jax is imported anywhere, so this runs first.
"""
import os

os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def fast_compile():
    """Turns off most XLA optimisations for end-to-end tests (compile time dominates)."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer tests, excluded from the default CI run")
