"""Tests for data/synthetic_rec.py: determinism, counts and the planted driver modality."""
import numpy as np
import pytest

from metafusion_jax.data.rec import synthetic as synthetic_rec


def _make(seed=0, **kw):
    return synthetic_rec.make_synthetic_microvideo(300, 400, 9000, seed=seed, **kw)


def test_deterministic_and_seed_dependent():
    (a, ia), (b, ib), (c, ic) = _make(0), _make(0), _make(1)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, s), getattr(b, s))
    for m in a.features:
        np.testing.assert_array_equal(a.features[m], b.features[m])
    np.testing.assert_array_equal(ia["driver"], ib["driver"])
    assert not np.array_equal(a.train, c.train)
    assert not np.array_equal(a.features["visual"], c.features["visual"])


def test_counts_shapes_and_split():
    data, info = _make(0)
    n = len(data.train) + len(data.val) + len(data.test)
    assert n == info["n_interactions"] == 9000
    assert 0.78 < len(data.train) / n < 0.82 and len(data.test) >= len(data.val)
    assert {m: x.shape for m, x in data.features.items()} == {
        "visual": (400, 64), "acoustic": (400, 32), "textual": (400, 32)}
    assert all(x.dtype == np.float32 for x in data.features.values())
    per_user = np.bincount(np.concatenate([data.train, data.val, data.test])[:, 0], minlength=300)
    assert per_user.min() >= 1 and per_user.max() <= 200
    assert np.bincount(info["driver"], minlength=3).min() > 100  # uniform over 3 modalities


def _held_out_r2(x, z, fit, test):
    w, *_ = np.linalg.lstsq(x[fit], z[fit], rcond=None)
    resid = z[test] - x[test] @ w
    return 1.0 - (resid ** 2).sum() / ((z[test] - z[test].mean(0)) ** 2).sum()


def test_driver_modality_expresses_the_preference_latent():
    data, info = synthetic_rec.make_synthetic_microvideo(
        200, 3000, 4000, modality_dims={"v": 48, "a": 40, "t": 32}, seed=2)
    z, driver = info["item_latent"], info["driver"]
    half = np.arange(3000) % 2 == 0
    for k, m in enumerate(info["modalities"]):
        x = data.features[m]
        own = _held_out_r2(x, z, half & (driver == k), ~half & (driver == k))
        other = _held_out_r2(x, z, half & (driver == k), ~half & (driver != k))
        assert own > 0.9 and other < 0.05, (m, own, other)


def test_cue_reveals_the_driver():
    data, info = synthetic_rec.make_synthetic_microvideo(
        100, 3000, 2000, modality_dims={"v": 48, "a": 40, "t": 32}, seed=3)
    x = np.concatenate(list(data.features.values()), axis=1)
    x = np.concatenate([x, np.ones((len(x), 1), np.float32)], axis=1)
    onehot = np.eye(3)[info["driver"]]
    half = np.arange(3000) % 2 == 0
    w, *_ = np.linalg.lstsq(x[half], onehot[half], rcond=None)
    accuracy = ((x[~half] @ w).argmax(1) == info["driver"][~half]).mean()
    assert accuracy > 0.9, accuracy


def test_interactions_follow_preference():
    data, info = _make(0, popularity=0.0)
    u, z = info["user_latent"], info["item_latent"]
    pairs = np.concatenate([data.train, data.val, data.test])
    chosen = (u[pairs[:, 0]] * z[pairs[:, 1]]).sum(1).mean()
    assert chosen > 1.0 and abs((u @ z.T).mean()) < 0.2  # chosen items score far above random


@pytest.mark.parametrize("kw, needle", [
    (dict(n_users=0), "n_users must be a positive int"),
    (dict(n_interactions=10), r"n_interactions must lie in .* = \[300, 60000\], got 10"),
    (dict(modality_dims={}), "modality_dims must map"),
])
def test_bad_arguments(kw, needle):
    args = dict(n_users=300, n_items=400, n_interactions=9000) | kw
    with pytest.raises(ValueError, match=needle):
        synthetic_rec.make_synthetic_microvideo(**args)
