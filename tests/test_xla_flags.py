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


def test_one_shot_jit_gives_the_same_init_and_works_nested():
    """Level-0 LLVM on CPU: the threefry init of a cohort head is bit-identical to jax.jit's;
    inside another jit it is traced as a plain nested jit (compiler options are top-level)."""
    from metafusion_jax.metafusion import cohort
    init = jax.vmap(lambda k: cohort.init_mlp(k, (24, 30, 1)))
    keys = jax.random.split(jax.random.key(3), 4)
    ref = jax.jit(init)(keys)
    got = xla_flags.one_shot_jit(init)(keys)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    double = xla_flags.one_shot_jit(lambda x: 2.0 * x)
    np.testing.assert_array_equal(jax.jit(lambda x: double(x) + 1.0)(np.ones(3, np.float32)),
                                  np.full(3, 3.0, np.float32))
    np.testing.assert_array_equal(double(np.ones(3, np.float32)), np.full(3, 2.0, np.float32))
