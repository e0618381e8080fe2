"""Tests of metafusion_jax.training.xla_flags."""
import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.training import xla_flags


def test_apply_cpu_flags_appends_once_and_keeps_user_flags():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = xla_flags.apply_cpu_flags(env)
    assert out == ("--xla_force_host_platform_device_count=8 "
                   "--xla_cpu_experimental_ynn_fusion_type=")
    assert xla_flags.apply_cpu_flags(env) == out          # idempotent
    assert xla_flags.apply_cpu_flags({}) == "--xla_cpu_experimental_ynn_fusion_type="


def test_apply_cpu_flags_leaves_a_user_value_alone():
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=default"}
    assert xla_flags.apply_cpu_flags(env) == "--xla_cpu_experimental_ynn_fusion_type=default"


def test_flag_is_live_in_this_process_and_keeps_the_numbers():
    # conftest applied the flags before the backend started: a vmapped (member-axis-first)
    # batched matmul must compile to XLA's dot, not a YNNPACK fusion, with the same values.
    a = jax.random.normal(jax.random.key(0), (6, 8, 16))
    w = jax.random.normal(jax.random.key(1), (6, 16, 8))
    f = jax.jit(jax.vmap(lambda x, v: x @ v))
    hlo = f.lower(a, w).compile().as_text()
    assert "ynn_fusion" not in hlo and " dot(" in hlo
    want = np.einsum("mbd,mdh->mbh", np.asarray(a, np.float64), np.asarray(w, np.float64))
    np.testing.assert_allclose(np.asarray(f(a, w)), want, rtol=1e-5, atol=1e-5)
