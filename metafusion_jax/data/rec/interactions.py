"""One in-memory structure for implicit-feedback datasets, its validation and a per-user split.

Every loader in `metafusion_jax.data` returns an `InteractionData` that went through
`validate_interactions`, so downstream code (samplers, models, metrics) can trust ids, shapes and
dtypes without re-checking them.
"""
import hashlib
from typing import NamedTuple

from absl import logging
import numpy as np


class InteractionData(NamedTuple):
    """An implicit-feedback dataset with item modality features.

    Attributes:
        name: dataset name, used in messages and result files.
        n_users: U.
        n_items: I.
        train: int32 [E, 2] (user, item) pairs, 0-based, unique.
        val: int32 [E_v, 2].
        test: int32 [E_t, 2].
        features: modality name -> float32 [I, D_k]; K >= 1; dict order is the modality order.
    """

    name: str
    n_users: int
    n_items: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    features: dict

    @classmethod
    def from_pairs(cls, *, n_users, n_items, train, val, test, features, name="pairs"):
        """Validated data from your own arrays: the entry point for data no loader reads.

        Goes through `validate_interactions` like every loader, so it fails with the same
        messages (source `InteractionData.from_pairs(name=...)`).

        Args:
            n_users: U.
            n_items: I.
            train: int [E, 2] 0-based (user, item) pairs; every user needs one.
            val: int [E_v, 2], non-empty, disjoint from train.
            test: int [E_t, 2], non-empty, disjoint from train and val.
            features: modality name -> finite float [I, D_k]; K >= 1.
            name: dataset name for messages and result files.

        Returns:
            The validated `InteractionData` (int32 pairs, float32 features).

        Raises:
            ValueError: on any problem `validate_interactions` finds.
        """
        data = cls(name=name, n_users=n_users, n_items=n_items, train=train, val=val,
                   test=test, features=features)
        return validate_interactions(data, source=f"InteractionData.from_pairs(name={name!r})")


SPLITS = ("train", "val", "test")


def fingerprint(data):
    """A cheap identity of a dataset: its sizes and a hash of the pair and feature bytes.

    Two `InteractionData` with equal fingerprints hold the same U, I, pairs (in order) and
    features (names, order and values); the name is not part of it. Hashing MovieLens-sized
    features (5,986 x 2,276 float32) takes well under a second.

    Args:
        data: an `InteractionData` (validated: int32 pairs, float32 features).

    Returns:
        str, e.g. "U=60 I=40 train=480 val=60 test=60 visual=40x8 | blake2b:9f...".
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{int(data.n_users)},{int(data.n_items)}".encode())
    sizes = [f"U={int(data.n_users)}", f"I={int(data.n_items)}"]
    for split in SPLITS:
        pairs = np.ascontiguousarray(getattr(data, split), np.int32)
        digest.update(f"{split}{pairs.shape}".encode())
        digest.update(pairs.tobytes())
        sizes.append(f"{split}={pairs.shape[0]}")
    for modality, x in data.features.items():
        x = np.ascontiguousarray(x, np.float32)
        digest.update(f"{modality}{x.shape}".encode())
        digest.update(x.tobytes())
        sizes.append(f"{modality}={x.shape[0]}x{x.shape[1]}")
    return " ".join(sizes) + " | blake2b:" + digest.hexdigest()


def pair_codes(pairs, n_items):
    """Encodes (user, item) pairs as one int64 per pair: user * I + item.

    Args:
        pairs: int [E, 2].
        n_items: I.

    Returns:
        int64 [E].
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    return pairs[:, 0] * np.int64(n_items) + pairs[:, 1]


def check_pairs(pairs, *, name, n_users, n_items, allow_empty=False,
                hint="Use 0-based ids, or fix n_users / n_items."):
    """The one validator of (user, item) pair arrays in the package.

    Args:
        pairs: int [E, 2] (user, item) rows, 0-based (numpy, jax or nested lists).
        name: what the pairs are, quoted first in every message (e.g. "ml-100k: val pairs").
        n_users: U; user ids must lie in [0, U).
        n_items: I; item ids must lie in [0, I).
        allow_empty: accept E = 0 (any dtype then).
        hint: what to do about an out-of-range id, appended to that message.

    Returns:
        int64 [E, 2].

    Raises:
        ValueError: on a shape other than [E, 2], a non-integer dtype, E = 0 (unless
            allow_empty) or an id outside [0, U) x [0, I).
    """
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape [E, 2] (user, item), got shape {pairs.shape}. "
            "Pass one 0-based (user, item) row per interaction.")
    if pairs.shape[0] == 0:
        if allow_empty:
            return np.zeros((0, 2), np.int64)
        raise ValueError(
            f"{name} are empty: at least one (user, item) pair is needed. "
            "Check the split files or use a larger dataset.")
    if not np.issubdtype(pairs.dtype, np.integer):
        raise ValueError(
            f"{name} must have an integer dtype, got {pairs.dtype}. Convert ids to int.")
    pairs = pairs.astype(np.int64)
    for col, label, limit in ((0, "user", n_users), (1, "item", n_items)):
        lo, hi = int(pairs[:, col].min()), int(pairs[:, col].max())
        if lo < 0 or hi >= limit:
            raise ValueError(
                f"{name}: {label} ids must lie in [0, {limit}) (n_{label}s={limit}), got range "
                f"[{lo}, {hi}]. {hint}")
    return pairs


def _drop_duplicates(pairs, source, split, n_items):
    codes = pair_codes(pairs, n_items)
    _, first = np.unique(codes, return_index=True)
    n_dup = len(codes) - len(first)
    if n_dup:
        logging.warning("%s: dropped %d duplicate (user, item) pairs within the %s split "
                        "(kept the first occurrence of each).", source, n_dup, split)
    return pairs[np.sort(first)]


def _check_features(features, source, n_items):
    if not isinstance(features, dict) or not features:
        raise ValueError(
            f"{source}: features must be a non-empty dict modality -> float32 [I, D], got "
            f"{type(features).__name__} of length {len(features) if features else 0}. "
            "Provide at least one item modality.")
    out = {}
    for name, x in features.items():
        where = f"{source}: features[{name!r}]"
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"{where} must be 2-D [I, D], got shape {x.shape}. "
                             "Reshape the feature file to (n_items, dim).")
        if x.shape[0] != n_items:
            raise ValueError(
                f"{where} has {x.shape[0]} rows but n_items is {n_items}. "
                "The feature file must have one row per item, in item-id order.")
        if x.shape[1] < 1:
            raise ValueError(f"{where} has 0 columns. Drop the modality or fix the file.")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{where} must be a float array, got dtype {x.dtype}. "
                             "Convert the features to float32.")
        bad = ~np.isfinite(x)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise ValueError(
                f"{where} has {int(bad.sum())} NaN/inf values in {len(rows)} items "
                f"(first item ids {rows[:5].tolist()}). Impute or drop them before loading.")
        with np.errstate(over="ignore"):  # reported below, with the item ids
            x32 = np.ascontiguousarray(x, dtype=np.float32)
        bad = ~np.isfinite(x32)  # finite float64 values beyond float32's range become inf
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise ValueError(
                f"{where} has {int(bad.sum())} values beyond the float32 range (|x| > "
                f"{float(np.finfo(np.float32).max):.3g}) in {len(rows)} items (first item ids "
                f"{rows[:5].tolist()}, largest |x| {float(np.abs(x).max()):.3g}); they would "
                "become inf. Rescale or standardise the features before loading.")
        out[name] = x32
    return out


def validate_interactions(data, source):
    """Checks an `InteractionData` and returns a cleaned copy.

    Checks (each failure raises `ValueError` naming `source`, the field and what to do):
    n_users/n_items positive; every split int [E, 2], non-empty, ids in range; features a
    non-empty dict of finite float [I, D_k] arrays with I == n_items; every user has at least one
    train item; no (user, item) pair in two splits (leakage).

    Cleaning: pairs are cast to int32 and features to float32; duplicate pairs *within* one split
    are dropped (first occurrence kept) and their count is logged with `absl.logging.warning`.

    Args:
        data: an `InteractionData`.
        source: where the data came from (file or directory), quoted in every message.

    Returns:
        The validated `InteractionData`.

    Raises:
        ValueError: on any of the problems above.
    """
    for field in ("n_users", "n_items"):
        value = getattr(data, field)
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{source}: {field} must be a positive int, got {value!r}.")
    n_users, n_items = int(data.n_users), int(data.n_items)
    splits = {}
    for split in SPLITS:
        pairs = check_pairs(getattr(data, split), name=f"{source}: {split} pairs",
                            n_users=n_users, n_items=n_items,
                            hint="Remap ids to 0-based, or fix n_users / n_items.")
        pairs = pairs.astype(np.int32)
        splits[split] = _drop_duplicates(pairs, source, split, n_items)
    codes = {s: pair_codes(p, n_items) for s, p in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = np.intersect1d(codes[a], codes[b])
        if shared.size:
            u, i = divmod(int(shared[0]), n_items)
            raise ValueError(
                f"{source}: {shared.size} (user, item) pairs appear in both {a} and {b} "
                f"(e.g. user {u}, item {i}); this leaks evaluation data into training. "
                "Fix the split so each pair is in exactly one split.")
    has_train = np.zeros(n_users, dtype=bool)
    has_train[splits["train"][:, 0]] = True
    if not has_train.all():
        missing = np.nonzero(~has_train)[0]
        raise ValueError(
            f"{source}: train split: {missing.size} users have no train item "
            f"(first user ids {missing[:5].tolist()}). Every user needs at least one train "
            "interaction: remove those users and remap ids, or move one of their pairs to train.")
    features = _check_features(data.features, source, n_items)
    return InteractionData(name=str(data.name), n_users=n_users, n_items=n_items,
                           features=features, **splits)


def _round_half_up(x):
    return np.floor(x + 0.5).astype(np.int64)


def per_user_split(pairs, n_users, seed, fractions=(0.8, 0.1, 0.1)):
    """Splits (user, item) pairs per user at random into train / val / test.

    Duplicate pairs are removed first. For a user with n pairs: n_train = max(1, round(f_train n))
    (half rounds up), and of the remaining r = n - n_train pairs test gets
    ceil(r f_test / (f_val + f_test)) and val the rest, so test >= val as in the MetaMMF split.
    Users with 1 or 2 pairs therefore keep all of them in train (round(1.6) = 2); a user with 3
    pairs gets 2 train and 1 test. Every user with at least one pair keeps at least one train pair.

    Args:
        pairs: int [E, 2] (user, item), 0-based.
        n_users: U; user ids must lie in [0, U) (users with no pairs get none in any split).
        seed: int seed of the shuffle (numpy `default_rng`).
        fractions: (train, val, test), non-negative, summing to 1.

    Returns:
        (train, val, test): int32 [E_s, 2] each, sorted by (user, item).

    Raises:
        ValueError: if `pairs` is not int [E, 2], an id is negative or a user id >= n_users,
            n_users is not a positive int, or `fractions` is invalid.
    """
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
        raise ValueError(f"per_user_split: pairs must be int [E, 2], got {pairs.dtype} "
                         f"{pairs.shape}. Pass one 0-based (user, item) row per interaction.")
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users < 1:
        raise ValueError(f"per_user_split: n_users must be a positive int, got {n_users!r}.")
    if len(pairs):
        users, items = pairs[:, 0], pairs[:, 1]
        if users.min() < 0 or users.max() >= n_users:
            raise ValueError(
                f"per_user_split: user ids must lie in [0, n_users={n_users}), got range "
                f"[{int(users.min())}, {int(users.max())}]. Remap ids to 0-based, or pass the "
                "right n_users.")
        if items.min() < 0:
            raise ValueError(
                f"per_user_split: item ids must be >= 0, got the smallest {int(items.min())}. "
                "Remap item ids to 0-based.")
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1.0) > 1e-6 or f[0] <= 0:
        raise ValueError(f"per_user_split: fractions must be 3 non-negative numbers summing to "
                         f"1 with train > 0, got {fractions}.")
    n_items = int(pairs[:, 1].max()) + 1 if len(pairs) else 1
    codes = np.unique(pair_codes(pairs, n_items))
    users, items = codes // n_items, codes % n_items
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(codes)), users))  # by user, random within user
    users, items = users[order], items[order]
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(users)) - starts[users]
    n_train = np.maximum(1, _round_half_up(f[0] * counts))
    n_train = np.minimum(n_train, counts)
    rest = counts - n_train
    eval_frac = f[2] / (f[1] + f[2]) if f[1] + f[2] > 0 else 1.0
    n_test = np.ceil(rest * eval_frac - 1e-9).astype(np.int64)
    r, nt, ntest = rank, n_train[users], n_test[users]
    masks = (r < nt, (r >= nt + ntest), (r >= nt) & (r < nt + ntest))
    out = []
    for mask in masks:
        part = np.stack([users[mask], items[mask]], axis=1)
        part = part[np.lexsort((part[:, 1], part[:, 0]))]
        out.append(part.astype(np.int32))
    return tuple(out)


class ColdSplit(NamedTuple):
    """Items held out with all their interactions (the cold-start protocol).

    Attributes:
        data: the warm `InteractionData`: same U, I and features, the cold items' pairs removed
            from every split; every user keeps at least one train pair.
        cold_items: int32 [I_c] sorted ids of the held-out items (no pair in `data` names them).
        cold_pairs: int32 [E_c, 2] every (user, item) pair of a cold item, from all three splits,
            sorted by (user, item): what a content-only ranking of the cold items is scored on.
    """

    data: InteractionData
    cold_items: np.ndarray
    cold_pairs: np.ndarray


def cold_item_split(data, fraction, seed=0):
    """Holds out a random `fraction` of the items with all their interactions.

    Items are visited in a seeded random order and made cold unless that would take a user's
    last train pair (so the warm data stays valid: every user keeps a train item); items without
    any pair are never chosen (nothing to evaluate on). round(fraction * I) items are held out,
    or fewer if the constraint runs out of candidates (a warning says how many).

    Args:
        data: a validated `InteractionData`.
        fraction: in (0, 1): the share of the I items to hold out.
        seed: numpy seed of the item order.

    Returns:
        ColdSplit.

    Raises:
        ValueError: if fraction is not in (0, 1), or no item can be held out.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            0.0 < fraction < 1.0):
        raise ValueError(
            f"cold_item_split: fraction must be a number in (0, 1) (the share of items held "
            f"out), got {fraction!r}. Use e.g. config.data.cold_items=0.2, or 0.0 for no "
            "cold-start split.")
    n_items, n_users = int(data.n_items), int(data.n_users)
    target = int(_round_half_up(np.float64(fraction) * n_items))
    every = np.concatenate([data.train, data.val, data.test]).astype(np.int64)
    train = np.asarray(data.train, np.int64)
    train_left = np.bincount(train[:, 0], minlength=n_users)
    order = np.argsort(train[:, 1], kind="stable")
    bounds = np.searchsorted(train[order, 1], np.arange(n_items + 1))
    has_pairs = np.bincount(every[:, 1], minlength=n_items) > 0
    cold = np.zeros(n_items, bool)
    for item in np.random.default_rng(seed).permutation(n_items):
        if cold.sum() >= target:
            break
        if not has_pairs[item]:
            continue
        users = train[order[bounds[item]:bounds[item + 1]], 0]
        if (train_left[users] > 1).all():
            train_left[users] -= 1
            cold[item] = True
    n_cold = int(cold.sum())
    if n_cold == 0:
        raise ValueError(
            f"cold_item_split: no item of {data.name!r} can be held out without taking some "
            "user's only train pair. Use data where users have more than one train pair.")
    if n_cold < target:
        logging.warning("cold_item_split: held out %d items, not the %d asked for (fraction %s): "
                        "the others would take a user's last train pair.", n_cold, target,
                        fraction)
    splits = {s: np.asarray(getattr(data, s)) for s in SPLITS}
    warm = {s: p[~cold[p[:, 1]]] for s, p in splits.items()}
    cold_pairs = every[cold[every[:, 1]]]
    cold_pairs = cold_pairs[np.lexsort((cold_pairs[:, 1], cold_pairs[:, 0]))].astype(np.int32)
    warm_data = data._replace(**warm)
    for split in ("val", "test"):
        if len(warm[split]) == 0:
            raise ValueError(
                f"cold_item_split: the warm {split} split of {data.name!r} is empty after "
                f"holding out {n_cold} items. Lower the fraction ({fraction}).")
    return ColdSplit(validate_interactions(warm_data, source=f"cold_item_split({data.name!r})"),
                     np.flatnonzero(cold).astype(np.int32), cold_pairs)
