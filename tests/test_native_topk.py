"""metafusion_jax.metrics.native_topk: the CPU top-k kernel equals lax.top_k; build fallbacks."""
import logging

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from jax import lax

from metafusion_jax.metrics import native_topk
from reliability import bad_input

needs_kernel = pytest.mark.skipif(not native_topk.available(),
                                  reason="no C++ compiler here: the native top-k is not built")


def _same_as_lax(x, k):
    got = jax.jit(lambda a: native_topk.top_k(a, k))(jnp.asarray(x))
    want = lax.top_k(jnp.asarray(x), k)
    # bit patterns, so that NaN == NaN and -0 != +0 in the comparison
    np.testing.assert_array_equal(np.asarray(got[0]).view(np.int32),
                                  np.asarray(want[0]).view(np.int32))
    np.testing.assert_array_equal(got[1], want[1])
    return got


@needs_kernel
@pytest.mark.parametrize("n,k", [(1, 1), (7, 7), (31, 3), (32, 1), (100, 20), (640, 20),
                                 (641, 20), (5996, 20), (2000, 64), (300, 300)])
def test_random_rows_equal_lax_top_k(n, k):
    # n below, at and above 32 k (the block-pruned pass), with and without a partial block
    rng = np.random.default_rng(n + k)
    _same_as_lax(rng.normal(size=(13, n)).astype(np.float32), k)


@needs_kernel
def test_ties_infinities_nan_and_signed_zero_equal_lax_top_k():
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (8, 1000)).astype(np.float32)   # few values: ties everywhere
    x[0] = 1.0                                              # one value: ids 0..k-1
    x[1] = -np.inf                                          # a fully masked row
    x[2, ::3] = -np.inf
    x[3, 500:] = np.inf
    x[4, [7, 900]] = np.nan                                 # NaN ranks above +inf
    x[5] = np.where(rng.random(1000) < 0.5, 0.0, -0.0)     # +0 ranks above -0
    x[6] = np.arange(1000, dtype=np.float32)               # ascending: an insertion every step
    x[7] = -np.arange(1000, dtype=np.float32)              # descending
    for k in (1, 5, 20, 40):
        vals, ids = _same_as_lax(x, k)
    np.testing.assert_array_equal(ids[0], np.arange(40))
    np.testing.assert_array_equal(ids[6], np.arange(999, 959, -1))


@needs_kernel
def test_leading_axes_and_vmap():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 700)).astype(np.float32)
    _same_as_lax(x, 9)
    got = jax.vmap(lambda a: native_topk.top_k(a, 9))(jnp.asarray(x))
    want = lax.top_k(jnp.asarray(x), 9)
    np.testing.assert_array_equal(got[1], want[1])


def test_bad_input_is_a_value_error():
    with bad_input("native top_k: int32 scores", match="float32"):
        native_topk.top_k(jnp.zeros((2, 8), jnp.int32), 2)
    with bad_input("native top_k: k above the last axis", match=r"k must be in \[1, 8\]"):
        native_topk.top_k(jnp.zeros((2, 8)), 9)
    with bad_input("native top_k: k = 0", match=r"k must be in \[1, 8\]"):
        native_topk.top_k(jnp.zeros((2, 8)), 0)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """available() re-evaluated as in a new process, with an empty library cache."""
    monkeypatch.setenv("METAFUSION_JAX_CACHE", str(tmp_path))
    monkeypatch.setattr(native_topk, "_registered", [])
    native_topk.available.cache_clear()
    yield tmp_path
    native_topk.available.cache_clear()


def test_no_compiler_falls_back_with_a_warning(fresh, monkeypatch, caplog):
    monkeypatch.setattr(native_topk, "_compiler", lambda: None)
    with caplog.at_level(logging.WARNING):
        assert native_topk.available() is False
    assert "no C++ compiler" in caplog.text


def test_failed_build_falls_back_and_leaves_no_library(fresh, monkeypatch, caplog):
    monkeypatch.setattr(native_topk, "_compiler", lambda: "/bin/false")
    with caplog.at_level(logging.WARNING):
        assert native_topk.available() is False
    assert "did not build or load" in caplog.text
    assert not list(fresh.rglob("*.so"))  # no half-written library is left to be loaded later


def test_env_switch_turns_it_off(fresh, monkeypatch):
    monkeypatch.setenv("METAFUSION_JAX_NATIVE", "0")
    assert native_topk.available() is False


@needs_kernel
def test_build_is_cached_per_source(fresh):
    cxx = native_topk._compiler()
    lib = native_topk.build(cxx)
    assert list(fresh.rglob("*.so")) == [lib]          # no temporary file left beside it
    stamp = lib.stat().st_mtime_ns
    assert native_topk.build(cxx) == lib               # a second build reuses the library
    assert lib.stat().st_mtime_ns == stamp
