"""training/random_bits.py: the unrolled threefry equals jax.random.bits word for word."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from metafusion_jax.training import random_bits


def test_threefry2x32_known_answers():
    # Known-answer vectors of threefry2x32 with 20 rounds (Random123, Salmon et al. SC'11).
    cases = [((0x0, 0x0), (0x0, 0x0), (0x6B200159, 0x99BA4EFE)),
             ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
             ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
    for (k0, k1), (x0, x1), want in cases:
        y = random_bits.threefry2x32(np.uint32(k0), np.uint32(k1), jnp.uint32([x0]),
                                     jnp.uint32([x1]))
        assert (int(y[0][0]), int(y[1][0])) == want


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (613, 32), (4, 3, 9)])
def test_equals_jax_random_bits(shape):
    for key in (jax.random.key(0), jax.random.fold_in(jax.random.key(11), 3),
                jax.random.split(jax.random.key(2))[1]):
        want = np.asarray(jax.random.bits(key, shape, jnp.uint32))
        np.testing.assert_array_equal(np.asarray(random_bits.bits(key, shape)), want)
        jitted = jax.jit(lambda k: random_bits.bits(k, shape))
        np.testing.assert_array_equal(np.asarray(jitted(key)), want)


def test_is_one_fusion_on_cpu_not_a_loop():
    # The reason the module exists: JAX's CPU lowering of threefry is a while loop.
    key = jax.random.key(0)
    ours = jax.jit(lambda k: random_bits.bits(k, (256, 32))).lower(key).compile().as_text()
    assert " while(" not in ours
    theirs = jax.jit(lambda k: jax.random.bits(k, (256, 32), jnp.uint32))
    if jax.default_backend() == "cpu":
        assert " while(" in theirs.lower(key).compile().as_text()


def test_other_key_impls_fall_back_to_jax_random_bits():
    key = jax.random.key(4, impl="rbg")
    np.testing.assert_array_equal(np.asarray(random_bits.bits(key, (9, 4))),
                                  np.asarray(jax.random.bits(key, (9, 4), jnp.uint32)))


def test_row_sharded_words_equal_one_device():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rows = NamedSharding(mesh, P("data"))
    key = jax.random.key(5)
    f = jax.jit(lambda k: random_bits.bits(k, (1024, 16)), out_shardings=rows)
    np.testing.assert_array_equal(np.asarray(f(key)),
                                  np.asarray(jax.random.bits(key, (1024, 16), jnp.uint32)))
