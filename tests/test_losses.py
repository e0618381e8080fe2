"""Tests for metammf/losses.py: BPR value against a numpy loop, gradients, padding."""
import jax
import jax.numpy as jnp
from jax import test_util as jtu
import numpy as np

from metafusion_jax.metammf import losses


def _batch(rng, U=6, I=9, H=4, B=5, k=3):
    return (rng.normal(size=(U, H)).astype(np.float32), rng.normal(size=(I, H)).astype(np.float32),
            rng.integers(0, U, B).astype(np.int32), rng.integers(0, I, B).astype(np.int32),
            rng.integers(0, I, (B, k)).astype(np.int32),
            np.array([1.0, 2.0, 0.0, 0.5, 1.0], np.float32))


def _numpy_bpr(ue, ie, users, pos, neg, weight):
    num = den = 0.0
    for b in range(len(users)):
        if weight[b] <= 0:
            continue
        row = 0.0
        for j in neg[b]:
            d = float(ue[users[b]] @ ie[pos[b]] - ue[users[b]] @ ie[j])
            row += -np.log(1.0 / (1.0 + np.exp(-d)))
        num += weight[b] * row / neg.shape[1]
        den += weight[b]
    return num / den


def test_bpr_value_matches_numpy_loop():
    args = _batch(np.random.default_rng(0))
    got = float(jax.jit(losses.bpr_loss)(*args))
    np.testing.assert_allclose(got, _numpy_bpr(*args), rtol=1e-5)


def test_bpr_hand_value():
    # one user, d = 1 - 0 = 1 -> log(1 + e^-1) = 0.31326169
    ue = np.array([[1.0, 0.0]], np.float32)
    ie = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    got = losses.bpr_loss(ue, ie, np.array([0]), np.array([0]), np.array([[1]]),
                          np.ones(1, np.float32))
    np.testing.assert_allclose(float(got), 0.31326169, rtol=1e-6)


def test_bpr_stable_for_large_margins():
    ue = np.array([[100.0]], np.float32)
    ie = np.array([[-1.0], [1.0]], np.float32)
    got = losses.bpr_loss(ue, ie, np.array([0]), np.array([0]), np.array([[1]]),
                          np.ones(1, np.float32))
    np.testing.assert_allclose(float(got), 200.0, rtol=1e-6)  # -log sigmoid(-200) = 200, not 23


def test_padding_rows_do_not_count():
    rng = np.random.default_rng(1)
    ue, ie, users, pos, neg, weight = _batch(rng)
    w1 = np.array([1, 1, 0, 0, 0], np.float32)
    padded = losses.bpr_loss(ue, ie, users, pos, neg, w1)
    short = losses.bpr_loss(ue, ie, users[:2], pos[:2], neg[:2], np.ones(2, np.float32))
    np.testing.assert_allclose(float(padded), float(short), rtol=1e-6)
    assert float(losses.bpr_loss(ue, ie, users, pos, neg, np.zeros(5, np.float32))) == 0.0


def test_bpr_gradients():
    ue, ie, users, pos, neg, weight = _batch(np.random.default_rng(2))
    f = lambda u, i: losses.bpr_loss(u, i, users, pos, neg, weight)
    jtu.check_grads(f, (ue, ie), order=2, modes=("fwd", "rev"), atol=2e-2, rtol=2e-2)


def test_l2_penalty():
    tree = {"a": jnp.array([1.0, 2.0]), "b": [jnp.array([[3.0]])]}
    np.testing.assert_allclose(float(losses.l2_penalty(tree)), 14.0)
