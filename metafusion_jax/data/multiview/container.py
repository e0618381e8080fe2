"""The multi-modal supervised data container shared by the simulator, mfeat and users' own arrays.

`MultiModalData` holds per-modality float32 matrices X_k [N, D_k] and a target y [N] for each
of the train / val / test splits. Every source goes through the same checks: `validate_views`
(one set of rows), `split_indices` (the seeded train / val / test split) and `validate_data`
(a whole `MultiModalData`, e.g. one a researcher built by hand). A researcher's own arrays:

    data = MultiModalData.from_arrays([x_rna, x_image], y, task="classification", seed=0)

Every source also needs the minimum rows of `min_split_rows(C)` in each split, checked before
anything trains: train >= max(10, 2 C) (every member and the meta-learner are fitted there),
val >= 5 (rho, the best epoch and the ensembles are chosen there) and test >= 5 (the reported
metric). Fewer rows would still give numbers, but not a result.

Letters: N rows, K modalities, D_k widths, C classes.
"""
from typing import NamedTuple, Optional, Sequence

import numpy as np
from sklearn.model_selection import train_test_split

TASKS = ("regression", "classification")
SPLITS = ("train", "val", "test")
MIN_TRAIN_ROWS, MIN_TRAIN_ROWS_PER_CLASS, MIN_EVAL_ROWS = 10, 2, 5


def min_split_rows(n_classes: int = 1) -> tuple:
    """Fewest (train, val, test) rows Meta Fusion trains and reports on: (max(10, 2 C), 5, 5)."""
    return (max(MIN_TRAIN_ROWS, MIN_TRAIN_ROWS_PER_CLASS * int(n_classes)), MIN_EVAL_ROWS,
            MIN_EVAL_ROWS)


def check_split_rows(sizes, n_classes: int, source: str, fix: str) -> None:
    """Raises ValueError if the (train, val, test) row counts are below `min_split_rows`."""
    need = min_split_rows(n_classes)
    if any(int(s) < m for s, m in zip(sizes, need)):
        train = (f"max({MIN_TRAIN_ROWS}, {MIN_TRAIN_ROWS_PER_CLASS} per class x {n_classes} "
                 "classes)" if n_classes > 1 else str(MIN_TRAIN_ROWS))
        raise ValueError(
            f"{source}: (train, val, test) = {tuple(int(s) for s in sizes)} rows, below the "
            f"minimum {need} that Meta Fusion trains and reports on (train >= {train}, val and "
            f"test >= {MIN_EVAL_ROWS}); {fix}")


def split_sizes(n: int, *, test_size: float, val_size: float) -> tuple:
    """(train, val, test) rows of `split_indices`: test ceil(test_size N), val of the rest."""
    n_test = int(np.ceil(test_size * n))
    n_val = int(np.ceil(val_size * (n - n_test)))
    return (n - n_test - n_val, n_val, n_test)


def min_rows(*, test_size: float, val_size: float, n_classes: int = 1) -> Optional[int]:
    """Fewest rows N whose `split_sizes` meet `min_split_rows(n_classes)` (None: no N does)."""
    if not (0 < test_size < 1 and 0 < val_size < 1):
        return None
    need = min_split_rows(n_classes)
    n = sum(need)
    while any(s < m for s, m in zip(split_sizes(n, test_size=test_size, val_size=val_size),
                                     need)):
        n += 1
    return n


def check_task(task, field="task") -> None:
    """Raises ValueError unless `task` is one of `TASKS` (`field` names it in the message)."""
    if task not in TASKS:
        raise ValueError(f"{field} must be one of {TASKS}, got {task!r}.")


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
        name: dataset name (e.g. "setting_1_1", "mfeat", "arrays").
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

    @property
    def sizes(self):
        """Rows (N_train, N_val, N_test) of the three splits."""
        return tuple(len(getattr(self, s).y) for s in SPLITS)

    @classmethod
    def from_arrays(cls, xs: Sequence[np.ndarray], y: np.ndarray, *, task: str, seed: int = 0,
                    fractions: Sequence[float] = (0.6, 0.2, 0.2), n_classes: Optional[int] = None,
                    modality_names: Optional[Sequence[str]] = None,
                    name: str = "arrays") -> "MultiModalData":
        """A researcher's own arrays, split by `seed` and checked like the built-in loaders.

        Args:
            xs: K arrays [N, D_k] (rows are samples, in the same order in every modality).
            y: [N] targets: floats (regression) or integer class indices 0..C-1 (classification).
            task: "regression" or "classification".
            seed: random_state of the split (the same seed gives the same split).
            fractions: (train, val, test) fractions of the N rows, each > 0, summing to 1. The
                split is stratified by class for classification, uniformly random for regression
                (sklearn `train_test_split`: test first, then val from the rest).
                Every split needs the minimum rows of `min_split_rows(C)` (train >= max(10, 2 C),
                val and test >= 5): with the default fractions N >= 22 (more for many classes).
            n_classes: C; default max(y) + 1 (classification); must be None or 1 for regression.
            modality_names: K names; default "modality_1", ..., "modality_K".
            name: dataset name (results and logs).

        Returns:
            `MultiModalData` with float32 X_k and float32 (regression) or int32 labels.

        Raises:
            ValueError: bad task, fractions, names or n_classes; mismatched rows; labels that are
                not integers or lie outside [0, C); NaN/inf (also after the cast to float32); a
                split below the minimum rows (train >= max(10, 2 C), val and test >= 5, see
                `min_split_rows`; the message gives the rows needed); a class too small to
                stratify.
        """
        source = f"from_arrays ({name})"
        check_task(task, f"{source}: task")
        if isinstance(xs, np.ndarray):
            raise ValueError(f"{source}: xs must be a list of K arrays [N, D_k], got one array of "
                             f"shape {xs.shape}; pass [x] for a single modality.")
        y = np.asarray(y)
        if task == "classification":
            _check_integer_labels(y, source)
            if n_classes is None:
                n_classes = int(y.max()) + 1 if y.size else 0
            if int(n_classes) < 2:
                raise ValueError(f"{source}: classification needs n_classes >= 2, got {n_classes} "
                                 f"(labels {np.unique(y)[:5].tolist()}); use task='regression' or "
                                 "labels of at least 2 classes.")
        elif n_classes not in (None, 1):
            raise ValueError(f"{source}: n_classes must be None or 1 for regression, got "
                             f"{n_classes}; pass task='classification' for class labels.")
        n_classes = int(n_classes) if task == "classification" else None
        xs, y = validate_views(xs, y, n_classes=n_classes, source=source)
        names = _modality_names(modality_names, len(xs), source)
        tr, va, te = split_indices(len(y), seed=seed, fractions=fractions,
                                   stratify=y if task == "classification" else None, source=source,
                                   n_classes=n_classes or 1)
        take = lambda ix: Split(tuple(x[ix] for x in xs), y[ix])
        return cls(name, task, n_classes or 1, names, take(tr), take(va), take(te))


def _modality_names(names, k, source):
    if names is None:
        return tuple(f"modality_{m + 1}" for m in range(k))
    names = tuple(str(n) for n in names)
    if len(names) != k or len(set(names)) != k:
        raise ValueError(f"{source}: modality_names must be {k} distinct names (one per "
                         f"modality), got {list(names)}.")
    return names


def _check_integer_labels(y, source):
    if y.ndim != 1:
        raise ValueError(f"{source}: labels must be 1-D [N], got shape {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.mod(y, 1) == 0):
            raise ValueError(f"{source}: labels must be integers (class indices 0..C-1), got "
                             f"dtype {y.dtype}; map class names or floats to 0-based integers.")


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
        ValueError: no views, a view that is not 2-D or has no columns, sample counts that differ
            across views or from y, NaN/inf values (checked after the cast to float32, so float64
            values beyond the float32 range are caught), labels out of range.
    """
    if len(xs) == 0:
        raise ValueError(f"{source}: expected at least one modality, got 0; pass a list of [N, D] arrays.")
    xs = tuple(np.asarray(x) for x in xs)
    y = np.asarray(y)
    for k, x in enumerate(xs):
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"{source}: modality {k} must be 2-D [N, D] with D >= 1, got shape "
                             f"{x.shape}.")
    if y.ndim != 1:
        raise ValueError(f"{source}: targets must be 1-D [N], got shape {y.shape}.")
    counts = [x.shape[0] for x in xs]
    if len(set(counts)) != 1 or counts[0] != y.shape[0]:
        raise ValueError(
            f"{source}: sample counts differ across modalities/labels: views have {counts} rows, "
            f"labels have {y.shape[0]}; every view needs one row per sample in the same order.")
    out = []
    for k, x in enumerate(xs):
        real = np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)
        if not real or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"{source}: modality {k} must hold real numbers, got dtype {x.dtype}.")
        with np.errstate(over="ignore"):
            x32 = x.astype(np.float32, copy=False)
        bad = ~np.isfinite(x32)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            overflow = bool(np.isfinite(x[r, c]))
            what = (f"values beyond the float32 range (|x| > 3.4e38, first {x[r, c]!r} at row {r}, "
                    f"column {c}); rescale the modality" if overflow else
                    f"{int(bad.sum())} NaN/inf values (first at row {r}, column {c}); impute or "
                    "drop them")
            raise ValueError(f"{source}: modality {k} has {what} before loading.")
        out.append(x32)
    if n_classes is not None:
        _check_integer_labels(y, source)
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(
                f"{source}: labels must lie in [0, {n_classes}), got range "
                f"[{y.min()}, {y.max()}]; remap labels to 0-based class indices.")
        y = y.astype(np.int32)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            y = y.astype(np.float32)
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{source}: targets contain NaN/inf (also after the cast to float32); "
                             "drop or rescale those rows.")
    return tuple(out), y


def _check_fractions(fractions, source):
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(not f > 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"{source}: fractions must be 3 positive values (train, val, test) "
                         f"summing to 1, got {tuple(fractions)}; e.g. (0.6, 0.2, 0.2).")
    return fr


def split_indices(n: int, *, seed: int, fractions=None, test_size=None, val_size=None,
                  stratify=None, source="data", n_classes=None):
    """Seeded train / val / test row indices (sklearn `train_test_split` twice).

    The test rows are split off first, then the val rows from the rest (random_state=seed both
    times), as the reference does. Give either `fractions` (train, val, test of all rows; then
    test_size = test and val_size = val / (1 - test)) or `test_size` and `val_size` (of the rest).

    Args:
        n: N rows.
        seed: random_state.
        fractions: (train, val, test) fractions, each > 0, summing to 1.
        test_size, val_size: fractions of all rows / of the rows left after the test split.
        stratify: [N] class labels to stratify by, or None (uniformly random).
        source: name used in error messages.
        n_classes: if given (C; 1 for regression), every split needs `min_split_rows(C)` rows.

    Returns:
        (train_idx, val_idx, test_idx) int arrays.

    Raises:
        ValueError: bad fractions, a split that would be empty or (with n_classes) below the
            minimum rows, classes too small to stratify.
    """
    if fractions is not None:
        fr = _check_fractions(fractions, source)
        test_size, val_size = fr[2], fr[1] / (1.0 - fr[2])
        asked = f"fractions {tuple(fractions)}"
    else:
        asked = f"test_size {test_size}, val_size {val_size} of the rest"
    sizes = split_sizes(n, test_size=test_size, val_size=val_size)
    if n_classes is not None:
        need = min_rows(test_size=test_size, val_size=val_size, n_classes=n_classes)
        more = f"at least {need} rows" if need else "more rows"
        check_split_rows(sizes, n_classes, source, f"{asked} of {n} rows: pass {more}"
                         f"{' or other fractions' if fractions is not None else ''}.")
    if min(sizes) < 1:
        raise ValueError(f"{source}: {asked} split {n} rows into (train, val, test) = {sizes}; "
                         "every split needs at least one row: pass more rows or other fractions.")
    idx = np.arange(n)
    try:
        rest, test = train_test_split(idx, test_size=test_size, random_state=seed,
                                      stratify=stratify)
        train, val = train_test_split(rest, test_size=val_size, random_state=seed,
                                      stratify=None if stratify is None else stratify[rest])
    except ValueError as e:
        how = "" if stratify is None else (
            f" stratified by class (rows per class "
            f"{np.bincount(np.asarray(stratify, np.int64)).tolist()})")
        raise ValueError(f"{source}: cannot split {n} rows into (train, val, test) = {sizes}"
                         f"{how} with {asked}: {e} Pass more rows per class or other "
                         "fractions.") from e
    return train, val, test


def validate_data(data: MultiModalData, source: str = "data") -> MultiModalData:
    """Checks a whole `MultiModalData` (e.g. built by hand) and returns it with float32 views.

    Raises:
        ValueError: a bad task or n_classes, an empty split, a split below the minimum rows
            (`min_split_rows`: train >= max(10, 2 C), val and test >= 5), modality widths that
            differ across splits, a wrong number of modality names, or any `validate_views`
            problem of a split.
    """
    if not isinstance(data, MultiModalData):
        raise ValueError(f"{source}: expected a MultiModalData, got {type(data).__name__}; build "
                         "one with MultiModalData.from_arrays(xs, y, task=...).")
    check_task(data.task, f"{source}: task")
    c = int(data.n_classes)
    if (data.task == "regression" and c != 1) or (data.task == "classification" and c < 2):
        raise ValueError(f"{source}: n_classes must be 1 for regression and >= 2 for "
                         f"classification, got {c} for task {data.task!r}.")
    splits = {}
    for s in SPLITS:
        split = getattr(data, s)
        xs, y = validate_views(split.xs, split.y, source=f"{source} {s} split",
                               n_classes=c if data.task == "classification" else None)
        if len(y) == 0:
            raise ValueError(f"{source}: the {s} split is empty; every split needs rows.")
        splits[s] = Split(xs, y)
    check_split_rows([len(splits[s].y) for s in SPLITS], c, source,
                     "add rows to the small splits (or build the data with "
                     "MultiModalData.from_arrays, whose message gives the rows needed).")
    widths = {s: tuple(x.shape[1] for x in splits[s].xs) for s in SPLITS}
    if len(set(widths.values())) != 1:
        raise ValueError(f"{source}: modality widths differ across splits: {widths}; every split "
                         "needs the same K modalities with the same columns.")
    if len(data.modality_names) != len(widths["train"]):
        raise ValueError(f"{source}: {len(data.modality_names)} modality_names for "
                         f"{len(widths['train'])} modalities.")
    return data._replace(modality_names=tuple(data.modality_names), **splits)
