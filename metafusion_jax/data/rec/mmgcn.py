"""Reader and writer for the MMGCN micro-video layout (MovieLens / TikTok / Kwai).

Layout (specs/metammf.md section 1.2), item ids stored offset by n_users:
    train.npy           int [E, 2] rows (user, item + U)
    val_full.npy        object [U'] rows [user, item + U, item + U, ...]
    test_full.npy       same as val_full.npy
    user_item_dict.npy  pickled dict user -> iterable of item + U (train items; optional)
    <feature>.npy       float [I, D_k] per modality, rows in item-id order; by default MMGCN's
                        MovieLens names (`MOVIELENS_FEATURE_FILES`), whichever of them exist
                        (a Kwai-style folder has no acoustic file)
"""
import os

from absl import logging
import numpy as np

from metafusion_jax.data.rec import interactions

# MMGCN's MovieLens feature files -> our modality names (dict order = modality order).
MOVIELENS_FEATURE_FILES = {
    "visual": "FeatureVideo_normal.npy",
    "acoustic": "FeatureAudio_avg_normal.npy",
    "textual": "FeatureText_stl_normal.npy",
}


def _path(directory, filename, what):
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: missing {what} file. The MMGCN layout needs train.npy, "
                         "val_full.npy, test_full.npy and one .npy feature file per modality "
                         "(pass feature_files={name: filename} for other names).")
    return path


def _feature_paths(directory, feature_files):
    """modality -> path: every file of an explicit mapping, else the MovieLens names present."""
    if feature_files:
        paths = {m: _path(directory, f, f"{m} feature") for m, f in feature_files.items()}
        logging.info("%s: feature files %s", directory, dict(feature_files))
        return paths
    paths = {m: os.path.join(directory, f) for m, f in MOVIELENS_FEATURE_FILES.items()
             if os.path.isfile(os.path.join(directory, f))}
    if not paths:
        raise ValueError(
            f"{directory}: no feature file found; looked for MMGCN's MovieLens names "
            f"{list(MOVIELENS_FEATURE_FILES.values())}. Pass feature_files={{modality: file "
            "name}} (config.data.feature_files) for other names.")
    absent = [m for m in MOVIELENS_FEATURE_FILES if m not in paths]
    logging.info("%s: found feature files for %s%s", directory, list(paths),
                 f"; none for {absent}" if absent else "")
    return paths


def _load_npy(path, allow_pickle=False):
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except Exception as e:  # numpy raises several types for corrupt or pickled files
        raise ValueError(f"{path}: could not be read as a .npy array ({e}). "
                         "Re-save it with numpy.save.") from e


def _rows_to_pairs(rows, path):
    """Turns per-user rows [user, item + U, ...] into an int64 [E, 2] array."""
    if rows.ndim not in (1, 2):
        got = (f"a pickled {type(rows.item()).__name__}" if rows.ndim == 0
               else f"an array of shape {rows.shape}")
        raise ValueError(f"{path}: expected one row per user [user, item + n_users, ...] "
                         f"(numpy.save of an object array of lists), got {got}.")
    users, items = [], []
    for r, row in enumerate(rows):
        row = np.asarray(row).ravel()
        if row.size == 0 or not np.issubdtype(row.dtype, np.integer):
            raise ValueError(f"{path}: row {r} must be a non-empty int sequence "
                             f"[user, item + n_users, ...], got {row!r}.")
        users.append(np.full(row.size - 1, row[0], dtype=np.int64))
        items.append(row[1:].astype(np.int64))
    if not users:
        return np.zeros((0, 2), dtype=np.int64)
    return np.stack([np.concatenate(users), np.concatenate(items)], axis=1)


def _check_user_ids(user_ids, limit, why):
    """Raises on the first user id >= limit: a stray user id, reported as one (not an offset)."""
    for path, users in user_ids.items():
        bad = users[users >= limit]
        if bad.size:
            raise ValueError(
                f"{path}: user id {int(bad[0])} is >= {limit} ({why}); {bad.size} such ids. "
                "A stray user id: remove or remap it, or pass the right n_users.")


def load_mmgcn(directory, feature_files=None, n_users=None, name=None):
    """Loads an MMGCN-format directory into validated `InteractionData`.

    Args:
        directory: folder with the files listed in the module docstring.
        feature_files: modality name -> file name inside `directory`; every file must exist.
            Default: whichever of `MOVIELENS_FEATURE_FILES` (visual, acoustic, textual) exist,
            at least one. The files found are logged.
        n_users: U, the item-id offset; default: 1 + the largest user id seen in
            user_item_dict.npy / train / val / test.
        name: dataset name; default the directory's base name.

    Returns:
        `InteractionData` with 0-based item ids and I = rows of the feature files.

    Raises:
        ValueError: missing or unreadable files, wrong shapes or dtypes, a user id that cannot be
            one (>= n_users, or >= the smallest stored item id when n_users is inferred), an
            offset that does not fit, or any problem `validate_interactions` finds.
    """
    train_path = _path(directory, "train.npy", "train")
    train = _load_npy(train_path)
    if train.ndim != 2 or train.shape[1] != 2 or not np.issubdtype(train.dtype, np.integer):
        raise ValueError(f"{train_path}: expected an int array of shape [E, 2] (user, item + "
                         f"n_users), got {train.dtype} {train.shape}.")
    splits = {"train": train.astype(np.int64)}
    user_ids = {train_path: splits["train"][:, 0]}
    for split in ("val", "test"):
        path = _path(directory, f"{split}_full.npy", split)
        rows = _load_npy(path, allow_pickle=True)
        splits[split] = _rows_to_pairs(rows, path)
        user_ids[path] = splits[split][:, 0]
    dict_path = os.path.join(directory, "user_item_dict.npy")
    user_item = None
    if os.path.isfile(dict_path):
        user_item = _load_npy(dict_path, allow_pickle=True)
        user_item = user_item.item() if user_item.dtype == object and user_item.ndim == 0 else None
        if not isinstance(user_item, dict):
            raise ValueError(f"{dict_path}: expected a pickled dict user -> items "
                             "(numpy.save of a dict), got another object.")
        user_ids[dict_path] = np.array([int(u) for u in user_item], dtype=np.int64)
    if n_users is None:
        stored_items = [int(p[:, 1].min()) for p in splits.values() if len(p)]
        if stored_items:
            _check_user_ids(user_ids, min(stored_items),
                            "the smallest stored item id; items are stored as item + n_users, "
                            "so every user id is below it")
        n_users = max((int(u.max()) for u in user_ids.values() if len(u)), default=0) + 1
    else:
        _check_user_ids(user_ids, int(n_users), f"n_users={n_users}")
    feature_paths = _feature_paths(directory, dict(feature_files or {}))
    features = {m: _load_npy(path) for m, path in feature_paths.items()}
    n_items = {m: x.shape[0] if x.ndim else 0 for m, x in features.items()}
    if len(set(n_items.values())) != 1:
        raise ValueError(f"{directory}: feature files disagree on the number of items (rows): "
                         f"{n_items}. All modalities need one row per item.")
    n_items = next(iter(n_items.values()))
    for split, pairs in splits.items():
        if len(pairs) and pairs[:, 1].min() < n_users:
            raise ValueError(
                f"{directory}: {split} item ids must be offset by n_users={n_users}, but the "
                f"smallest is {int(pairs[:, 1].min())}. Pass the right n_users, or the files "
                "are not in the offset MMGCN layout.")
        splits[split] = pairs - np.array([0, n_users])
    if user_item is not None:
        dict_pairs = sum(len(v) for v in user_item.values())
        if dict_pairs != len(splits["train"]):
            logging.info("%s: user_item_dict.npy holds %d pairs, train.npy %d; using train.npy.",
                         dict_path, dict_pairs, len(splits["train"]))
    data = interactions.InteractionData(
        name=name or os.path.basename(os.path.normpath(directory)), n_users=int(n_users),
        n_items=int(n_items), features=features, **splits)
    return interactions.validate_interactions(data, source=directory)


def write_mmgcn(directory, data, feature_files=None):
    """Writes `InteractionData` in the MMGCN layout (inverse of `load_mmgcn`).

    Args:
        directory: output folder (created if needed).
        data: `InteractionData`.
        feature_files: modality name -> file name; default the MovieLens names
            (`MOVIELENS_FEATURE_FILES`), which `load_mmgcn` reads by default.

    Returns:
        The feature_files mapping used (pass it to `load_mmgcn` if it is not the default).

    Raises:
        ValueError: if feature_files is None and a modality has no MovieLens name, or
            feature_files names a modality the data lacks.
    """
    if feature_files is None:
        unnamed = [m for m in data.features if m not in MOVIELENS_FEATURE_FILES]
        if unnamed:
            raise ValueError(
                f"write_mmgcn: modalities {unnamed} have no default MMGCN file name (defaults: "
                f"{MOVIELENS_FEATURE_FILES}). Pass feature_files={{modality: file name}} and "
                "load with the same feature_files.")
        feature_files = {m: MOVIELENS_FEATURE_FILES[m] for m in data.features}
    feature_files = dict(feature_files)
    unknown = sorted(set(feature_files) - set(data.features))
    if unknown:
        raise ValueError(f"write_mmgcn: feature_files names modalities {unknown} that the data "
                         f"lacks (its modalities: {list(data.features)}).")
    os.makedirs(directory, exist_ok=True)
    offset = np.array([0, data.n_users], dtype=np.int64)
    np.save(os.path.join(directory, "train.npy"), np.asarray(data.train, np.int64) + offset)
    for split in ("val", "test"):
        pairs = np.asarray(getattr(data, split), np.int64) + offset
        rows = np.empty(data.n_users, dtype=object)
        order = np.argsort(pairs[:, 0], kind="stable")
        bounds = np.searchsorted(pairs[order, 0], np.arange(data.n_users + 1))
        for u in range(data.n_users):
            rows[u] = [u] + pairs[order[bounds[u]:bounds[u + 1]], 1].tolist()
        np.save(os.path.join(directory, f"{split}_full.npy"), rows, allow_pickle=True)
    user_item = {u: set() for u in range(data.n_users)}
    for u, i in np.asarray(data.train, np.int64) + offset:
        user_item[int(u)].add(int(i))
    np.save(os.path.join(directory, "user_item_dict.npy"), np.array(user_item, dtype=object),
            allow_pickle=True)
    for modality, filename in feature_files.items():
        np.save(os.path.join(directory, filename), data.features[modality])
    return feature_files
