"""The multi-modal supervised data container shared by the simulator, mfeat and users' own arrays.

`MultiModalData` holds per-modality float32 matrices X_k [N, D_k] and a target y [N] for each
of the train / val / test splits; `validate_views` is the one check every source goes through.
"""
from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
    """One split of multi-modal data.

    Attributes:
        xs: tuple of K float32 arrays [N, D_k], in modality order.
        y: [N] float32 targets (regression) or int32 class indices (classification).
    """
    xs: tuple
    y: np.ndarray


class MultiModalData(NamedTuple):
    """Train / val / test splits of K modalities with a shared target.

    Attributes:
        name: dataset name (e.g. "setting_1_1", "mfeat").
        task: "regression" or "classification".
        n_classes: C for classification, 1 for regression.
        modality_names: tuple of K names.
        train, val, test: `Split`s.
    """
    name: str
    task: str
    n_classes: int
    modality_names: tuple
    train: Split
    val: Split
    test: Split

    @property
    def dims(self):
        """Tuple of K modality widths D_k."""
        return tuple(int(x.shape[1]) for x in self.train.xs)


def validate_views(xs, y, *, n_classes=None, source="data"):
    """Checks K views and a target; raises `ValueError` naming the problem.

    Args:
        xs: sequence of K arrays [N, D_k].
        y: [N] targets.
        n_classes: if given, y must be integers in [0, n_classes).
        source: name used in error messages (a file, a setting).

    Returns:
        (xs as a tuple of float32 arrays, y as int32 if n_classes else float32).

    Raises:
        ValueError: no views, a view that is not 2-D, sample counts that differ
            across views or from y, NaN/inf values, labels out of range.
    """
    if len(xs) == 0:
        raise ValueError(f"{source}: expected at least one modality, got 0; pass a list of [N, D] arrays.")
    xs = tuple(np.asarray(x) for x in xs)
    y = np.asarray(y)
    for k, x in enumerate(xs):
        if x.ndim != 2:
            raise ValueError(f"{source}: modality {k} must be 2-D [N, D], got shape {x.shape}.")
    counts = [x.shape[0] for x in xs]
    if len(set(counts)) != 1 or counts[0] != y.shape[0]:
        raise ValueError(
            f"{source}: sample counts differ across modalities/labels: views have {counts} rows, "
            f"labels have {y.shape[0]}; every view needs one row per sample in the same order.")
    for k, x in enumerate(xs):
        bad = ~np.isfinite(x)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(
                f"{source}: modality {k} has {int(bad.sum())} NaN/inf values (first at row {r}, "
                f"column {c}); impute or drop them before loading.")
    if n_classes is not None:
        if not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0):
            raise ValueError(f"{source}: labels must be integers, got dtype {y.dtype}.")
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(
                f"{source}: labels must lie in [0, {n_classes}), got range "
                f"[{y.min()}, {y.max()}]; remap labels to 0-based class indices.")
        y = y.astype(np.int32)
    else:
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{source}: targets contain NaN/inf.")
        y = y.astype(np.float32)
    return tuple(x.astype(np.float32) for x in xs), y
