"""Tests for data/interactions.py: validation errors (one per bad input) and per_user_split."""
from absl import logging
import numpy as np
import pytest

from metafusion_jax.data.rec import interactions
from reliability import bad_input


def _data(**overrides):
    fields = dict(
        name="toy", n_users=3, n_items=4,
        train=np.array([[0, 0], [1, 1], [2, 2], [0, 3]], np.int32),
        val=np.array([[0, 1], [1, 2]], np.int32),
        test=np.array([[2, 3], [1, 0]], np.int32),
        features={"a": np.arange(8, dtype=np.float32).reshape(4, 2),
                  "b": np.ones((4, 3), np.float64)})
    fields.update(overrides)
    return interactions.InteractionData(**fields)


def test_valid_data_passes_and_casts():
    out = interactions.validate_interactions(_data(), "toy.npz")
    assert out.features["b"].dtype == np.float32 and out.train.dtype == np.int32
    np.testing.assert_array_equal(out.train, _data().train)
    assert list(out.features) == ["a", "b"]


@pytest.mark.parametrize("field, value, needle", [
    ("train", np.zeros((3, 3), np.int32), "train pairs must have shape [E, 2]"),
    ("val", np.array([[0.0, 1.0]]), "val pairs must have an integer dtype"),
    ("test", np.zeros((0, 2), np.int32), "test pairs are empty"),
    ("val", np.array([[3, 0]], np.int32),
     "toy.npz: val pairs: user ids must lie in [0, 3) (n_users=3), got range [3, 3]. Remap"),
    ("test", np.array([[0, -1]], np.int32), "test pairs: item ids must lie in [0, 4)"),
])
def test_bad_pairs(field, value, needle):
    with pytest.raises(ValueError, match="toy.npz") as e:
        interactions.validate_interactions(_data(**{field: value}), "toy.npz")
    assert needle in str(e.value)


def test_check_pairs_is_the_one_validator():
    out = interactions.check_pairs([[0, 1], [2, 3]], name="p", n_users=3, n_items=4)
    assert out.dtype == np.int64 and out.tolist() == [[0, 1], [2, 3]]
    empty = interactions.check_pairs(np.zeros((0, 2)), name="p", n_users=3, n_items=4,
                                     allow_empty=True)
    assert empty.shape == (0, 2) and empty.dtype == np.int64
    with pytest.raises(ValueError, match=r"^p: user ids must lie in \[0, 3\) \(n_users=3\), "
                                         r"got range \[0, 5\]. fix it$"):
        interactions.check_pairs([[0, 1], [5, 0]], name="p", n_users=3, n_items=4,
                                 hint="fix it")


def test_from_pairs_validates_and_casts():
    d = _data()
    out = interactions.InteractionData.from_pairs(
        n_users=3, n_items=4, train=d.train.astype(np.int64), val=d.val, test=d.test.tolist(),
        features=d.features, name="mine")
    assert out.name == "mine" and out.train.dtype == np.int32 and out.test.dtype == np.int32
    assert out.features["b"].dtype == np.float32
    with pytest.raises(ValueError, match=r"InteractionData.from_pairs\(name='pairs'\): train "
                                         r"split: 1 users have no train item"):
        interactions.InteractionData.from_pairs(
            n_users=4, n_items=4, train=d.train, val=d.val, test=d.test, features=d.features)


def test_fingerprint_sees_pairs_and_features_not_the_name():
    d = interactions.validate_interactions(_data(), "x")
    fp = interactions.fingerprint(d)
    assert fp.startswith("U=3 I=4 train=4 val=2 test=2 a=4x2 b=4x3 | blake2b:")
    assert interactions.fingerprint(d._replace(name="other")) == fp
    swapped = d._replace(val=d.test, test=d.val)
    feats = dict(d.features, b=d.features["b"] * 2)
    assert len({fp, interactions.fingerprint(swapped),
                interactions.fingerprint(d._replace(features=feats))}) == 3


def test_wrong_feature_rows():
    feats = {"a": np.zeros((5, 2), np.float32)}
    with pytest.raises(ValueError, match=r"toy.npz: features\['a'\] has 5 rows but n_items is 4"):
        interactions.validate_interactions(_data(features=feats), "toy.npz")


def test_feature_not_2d_and_int_dtype():
    with pytest.raises(ValueError, match=r"features\['a'\] must be 2-D"):
        interactions.validate_interactions(_data(features={"a": np.zeros(4)}), "x")
    with pytest.raises(ValueError, match=r"features\['a'\] must be a float array"):
        interactions.validate_interactions(_data(features={"a": np.zeros((4, 2), int)}), "x")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features(bad):
    x = np.zeros((4, 2), np.float32)
    x[2, 1] = bad
    with pytest.raises(ValueError, match=r"features\['b'\] has 1 NaN/inf values.*\[2\]"):
        interactions.validate_interactions(_data(features={"a": x[:, :1] * 0, "b": x}), "x")


def test_no_modalities():
    with pytest.raises(ValueError, match="features must be a non-empty dict"):
        interactions.validate_interactions(_data(features={}), "x")


def test_user_without_train_items():
    train = np.array([[0, 0], [1, 1], [0, 3]], np.int32)
    with pytest.raises(ValueError, match=r"x: train split: 1 users have no train item .*\[2\]"):
        interactions.validate_interactions(_data(train=train), "x")


def test_cross_split_leakage():
    val = np.array([[0, 1], [2, 2]], np.int32)  # (2, 2) also in train
    with pytest.raises(ValueError, match="x: 1 .* both train and val .*user 2, item 2"):
        interactions.validate_interactions(_data(val=val), "x")


def test_duplicates_dropped_and_counted(monkeypatch):
    messages = []
    monkeypatch.setattr(logging, "warning", lambda msg, *a: messages.append(msg % a))
    train = np.array([[0, 0], [1, 1], [0, 0], [2, 2], [0, 3], [1, 1], [0, 0]], np.int32)
    out = interactions.validate_interactions(_data(train=train), "dup.inter")
    np.testing.assert_array_equal(out.train, [[0, 0], [1, 1], [2, 2], [0, 3]])
    assert len(messages) == 1
    assert "dup.inter: dropped 3 duplicate" in messages[0] and "train" in messages[0]


def _reference_counts(n, f=(0.8, 0.1, 0.1)):
    n_train = min(n, max(1, int(np.floor(f[0] * n + 0.5))))
    rest = n - n_train
    n_test = int(np.ceil(rest * f[2] / (f[1] + f[2]) - 1e-9))
    return n_train, rest - n_test, n_test


def test_reference_counts_hand_values():
    assert [_reference_counts(n) for n in (1, 2, 3, 5, 8, 10, 20)] == [
        (1, 0, 0), (2, 0, 0), (2, 0, 1), (4, 0, 1), (6, 1, 1), (8, 1, 1), (16, 2, 2)]


def test_per_user_split_matches_loop_reference():
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 60
    pairs = np.concatenate([
        np.stack([np.full(k, u), rng.choice(n_items, k, replace=False)], 1)
        for u, k in enumerate(rng.integers(1, 30, n_users))])
    pairs = np.concatenate([pairs, pairs[:7]])  # duplicates are removed first
    train, val, test = interactions.per_user_split(pairs, n_users, seed=3)
    unique = {tuple(p) for p in pairs.tolist()}
    got = [set(map(tuple, s.tolist())) for s in (train, val, test)]
    assert set.union(*got) == unique and sum(map(len, got)) == len(unique)
    for u in range(n_users):
        n = sum(1 for p in unique if p[0] == u)
        assert tuple(sum(1 for p in s if p[0] == u) for s in got) == _reference_counts(n)
    again = interactions.per_user_split(pairs, n_users, seed=3)
    other = interactions.per_user_split(pairs, n_users, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, val, test)))
    assert not np.array_equal(other[0], train)
    assert all(np.all(np.diff(interactions.pair_codes(s, n_items)) > 0) for s in again)


def test_per_user_split_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        interactions.per_user_split(np.zeros((2, 2), int), 1, 0, fractions=(0.5, 0.1, 0.1))


def test_float64_features_beyond_float32_range():
    x = np.zeros((4, 2), np.float64)
    x[1, 0] = 1e39  # finite in float64, inf in float32
    with bad_input("MetaMMF data: float64 features beyond the float32 range",
                   match=r"x: features\['b'\] has 1 values beyond the float32 range \(\|x\| > "
                         r"3.4e\+38\) in 1 items \(first item ids \[1\], largest \|x\| 1e\+39\)"
                         r"; they would become inf"):
        interactions.validate_interactions(_data(features={"a": x[:, :1] * 0, "b": x}), "x")


def test_per_user_split_checks_ids():
    pairs = np.array([[0, 1], [1, 2], [2, 0]])
    with bad_input("per_user_split: a negative user id",
                   match=r"per_user_split: user ids must lie in \[0, n_users=3\), got range "
                         r"\[-1, 1\]"):
        interactions.per_user_split(pairs - np.array([1, 0]), 3, 0)
    with bad_input("per_user_split: a user id >= n_users",
                   match=r"per_user_split: user ids must lie in \[0, n_users=2\), got range "
                         r"\[0, 2\]. Remap ids to 0-based, or pass the right n_users"):
        interactions.per_user_split(pairs, 2, 0)
    with bad_input("per_user_split: a negative item id",
                   match=r"per_user_split: item ids must be >= 0, got the smallest -1"):
        interactions.per_user_split(pairs - np.array([0, 1]), 3, 0)
    with bad_input("per_user_split: n_users not a positive int",
                   match=r"per_user_split: n_users must be a positive int, got 2.5"):
        interactions.per_user_split(pairs, 2.5, 0)
    train, val, test = interactions.per_user_split(np.zeros((0, 2), int), 3, 0)
    assert train.shape == val.shape == test.shape == (0, 2)
