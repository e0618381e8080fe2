"""`jax.random.bits` for threefry keys, computed with an unrolled hash that XLA CPU fuses.

JAX lowers the threefry2x32 hash on CPU as a `while` loop over its five groups of four rounds
(to keep compile times down), so XLA materialises the two [shape] uint32 state arrays at every
trip: on [61471, 32] words (one MetaMMF dropout mask at MovieLens size) that costs 50 ms on one
core. The same hash written out round by round is one elementwise fusion: 10 ms, bit for bit the
same words (benchmarks/bench_metammf_step.py, tests/test_random_bits.py).

Only the default configuration is reimplemented: a threefry2x32 key and
`jax_threefry_partitionable=True` (the JAX default), where the word at flat index n of `shape` is
x0 ^ x1 of threefry2x32(key, (n >> 32, n & 0xffffffff)) [Salmon et al., SC'11]. Any other key
implementation, the non-partitionable mode or more than 2^32 words go to `jax.random.bits`.
The counters come from iotas, so under a sharding each device hashes only its own words.
"""
import math

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x, d):
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(k0, k1, x0, x1):
    """The threefry2x32 block cipher (20 rounds) on uint32 arrays, written out unrolled.

    Args:
        k0, k1: uint32 scalars, the key words.
        x0, x1: uint32 arrays of one shape, the counter words.

    Returns:
        (y0, y1): uint32 arrays of that shape.
    """
    keys = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + keys[0], x1 + keys[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotate_left(x1, r)
        x0 = x0 + keys[(group + 1) % 3]
        x1 = x1 + keys[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def _is_fast_case(key, size):
    return (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()
            and str(jax.random.key_impl(key)) == "threefry2x32"
            and jax.config.jax_threefry_partitionable and size < 2 ** 32)


def bits(key, shape):
    """uint32 random words of `shape`, equal to `jax.random.bits(key, shape, jnp.uint32)`.

    Args:
        key: a scalar typed PRNG key (`jax.random.key`).
        shape: tuple of ints, at least one axis.

    Returns:
        uint32 array of `shape`.
    """
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)
    if not shape or not _is_fast_case(key, size):
        return jax.random.bits(key, shape, jnp.uint32)
    data = jax.random.key_data(key)
    strides = [math.prod(shape[d + 1:]) for d in range(len(shape))]
    counter = sum(lax.broadcasted_iota(jnp.uint32, shape, d) * np.uint32(s)
                  for d, s in enumerate(strides))
    y0, y1 = threefry2x32(data[0], data[1], jnp.zeros(shape, jnp.uint32), counter)
    return y0 ^ y1
