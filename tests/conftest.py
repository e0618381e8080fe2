"""Test-wide JAX settings: 8 fake CPU devices and strict rank promotion.

XLA_FLAGS must be set before jax is imported anywhere, so this runs first.
"""
import contextlib
import os

os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from metafusion_jax.training.xla_flags import apply_cpu_flags  # noqa: E402

apply_cpu_flags()  # the binaries' CPU flags, so tests compile what the binaries run

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@contextlib.contextmanager
def no_xla_optimisations():
    """Most XLA optimisations off: compile time dominates tiny end-to-end shapes."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture
def fast_compile():
    """`no_xla_optimisations` for one test."""
    with no_xla_optimisations():
        yield


@pytest.fixture(scope="module")
def fast_compile_module():
    """`no_xla_optimisations` for a whole test module (`pytestmark = usefixtures(...)`)."""
    with no_xla_optimisations():
        yield


@pytest.fixture(scope="module")
def persistent_compile_cache(tmp_path_factory):
    """A persistent compile cache for one test module: its runs compile the same programs, and
    every train_and_evaluate call jits fresh functions (in-memory caches miss)."""
    from jax.experimental.compilation_cache import compilation_cache
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


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer tests, excluded from the default CI run")


def pytest_sessionfinish(session, exitstatus):
    """With WRITE_RELIABILITY_DOC=1: docs/RELIABILITY.md's bad-input table from this run."""
    if os.environ.get("WRITE_RELIABILITY_DOC") != "1" or exitstatus != 0:
        return
    import reliability_doc  # noqa: WPS433  (tests/reliability_doc.py, only when writing)
    reliability_doc.write(session.config.rootpath)
