"""MultiModalData.from_arrays: split sizes and stratification on hand-made cases, and every
bad-input path through the shared checks (validate_views, split_indices, validate_data)."""
import numpy as np
from reliability import bad_input
from sklearn.model_selection import train_test_split

from metafusion_jax.data.multiview.container import SPLITS, MultiModalData, Split
from metafusion_jax.data.multiview.container import split_indices, validate_data

RNG = np.random.default_rng(0)


def _xs(n=50, widths=(4, 3)):
    return [RNG.normal(size=(n, d)) for d in widths]


def test_classification_split_sizes_and_class_counts():
    # N = 50, 5 classes of 10: test = ceil(0.2 * 50) = 10 rows, val = ceil(0.25 * 40) = 10,
    # train 30; stratified: 2 / 2 / 6 rows of every class.
    y = np.repeat(np.arange(5), 10)
    RNG.shuffle(y)
    xs = _xs()
    data = MultiModalData.from_arrays(xs, y, task="classification", seed=3)
    assert data.sizes == (30, 10, 10) and data.dims == (4, 3)
    assert (data.task, data.n_classes, data.name) == ("classification", 5, "arrays")
    assert data.modality_names == ("modality_1", "modality_2")
    for split, per_class in (("train", 6), ("val", 2), ("test", 2)):
        assert np.bincount(getattr(data, split).y, minlength=5).tolist() == [per_class] * 5
    assert data.train.y.dtype == np.int32 and data.train.xs[0].dtype == np.float32
    # Every row lands in exactly one split with its features and label intact.
    rows = np.concatenate([np.concatenate([*getattr(data, s).xs, getattr(data, s).y[:, None]], 1)
                           for s in SPLITS])
    ref = np.concatenate([*xs, y[:, None]], 1).astype(np.float32)
    key = lambda a: a[np.lexsort(a.T[::-1])]
    np.testing.assert_array_equal(key(rows), key(ref))
    again = MultiModalData.from_arrays(xs, y, task="classification", seed=3)
    np.testing.assert_array_equal(again.test.y, data.test.y)
    other = MultiModalData.from_arrays(xs, y, task="classification", seed=4)
    assert not np.array_equal(other.test.xs[0], data.test.xs[0])


def test_regression_split_is_sklearn_random_split_and_names():
    xs, y = _xs(n=20), RNG.normal(size=20)
    data = MultiModalData.from_arrays(xs, y, task="regression", seed=1, fractions=(0.5, 0.25, 0.25),
                                      modality_names=("rna", "image"), name="mine")
    # test = ceil(0.25 * 20) = 5; val = ceil(1/3 * 15) = 5; train 10.
    assert data.sizes == (10, 5, 5) and data.n_classes == 1 and data.modality_names == ("rna", "image")
    rest, test = train_test_split(np.arange(20), test_size=0.25, random_state=1)
    train, val = train_test_split(rest, test_size=0.25 / 0.75, random_state=1)
    np.testing.assert_array_equal(data.val.y, y[val].astype(np.float32))
    np.testing.assert_array_equal(data.test.xs[1], xs[1][test].astype(np.float32))
    np.testing.assert_array_equal(data.train.y, y[train].astype(np.float32))


def test_n_classes_inferred_or_given():
    y = np.repeat([0, 2], 15)          # class 1 absent: C = max + 1 = 3
    assert MultiModalData.from_arrays(_xs(30), y, task="classification").n_classes == 3
    assert MultiModalData.from_arrays(_xs(30), y.astype(float), task="classification",
                                      n_classes=4).n_classes == 4


def _from_arrays(**kwargs):
    args = dict(xs=_xs(), y=np.arange(50) % 5, task="classification")
    args.update(kwargs)
    return MultiModalData.from_arrays(args.pop("xs"), args.pop("y"), **args)


def test_bad_rows_and_labels_raise():
    with bad_input("Meta Fusion data: from_arrays views with different row counts",
                   match=r"views have \[50, 49\] rows, labels have 50"):
        _from_arrays(xs=[np.zeros((50, 2)), np.zeros((49, 2))])
    with bad_input("Meta Fusion data: from_arrays labels with another row count than the views",
                   match=r"views have \[50, 50\] rows, labels have 49"):
        _from_arrays(y=np.arange(49) % 5)
    with bad_input("Meta Fusion data: from_arrays labels >= the given n_classes",
                   match=r"labels must lie in \[0, 4\), got range \[0, 4\]"):
        _from_arrays(y=np.arange(50) % 5, n_classes=4)
    with bad_input("Meta Fusion data: from_arrays negative class labels",
                   match=r"labels must lie in \[0, 4\), got range \[-1, 3\]"):
        _from_arrays(y=np.arange(50) % 5 - 1)
    with bad_input("Meta Fusion data: classification on continuous targets (from_arrays)",
                   match="labels must be integers"):
        _from_arrays(y=np.arange(50) % 5 + 0.5)
    with bad_input("Meta Fusion data: classification labels of a single class",
                   match="n_classes >= 2"):
        _from_arrays(y=np.zeros(50, int))


def test_bad_values_raise():
    with bad_input("Meta Fusion data: NaN features", match=r"100 NaN/inf values \(first at row 0, "
                   r"column 0\)"):
        _from_arrays(xs=[np.full((50, 2), np.nan)])
    with bad_input("Meta Fusion data: inf features", match=r"NaN/inf values \(first at row 0"):
        _from_arrays(xs=[np.where(np.eye(50, 3) > 0, np.inf, 0.0)])
    with bad_input("Meta Fusion data: float64 features beyond the float32 range",
                   match=r"float32 range.*row 0, column 0"):
        _from_arrays(xs=[np.full((50, 2), 1e39)])
    with bad_input("Meta Fusion data: NaN regression targets", match="targets contain NaN/inf"):
        MultiModalData.from_arrays(_xs(), np.r_[np.nan, np.zeros(49)], task="regression")
    with bad_input("Meta Fusion data: float64 regression targets beyond the float32 range",
                   match="targets contain NaN/inf"):
        MultiModalData.from_arrays(_xs(), np.r_[1e40, np.zeros(49)], task="regression")


def test_bad_arguments_raise():
    with bad_input("Meta Fusion data: from_arrays fractions not summing to 1",
                   match="summing to 1"):
        _from_arrays(fractions=(0.7, 0.2, 0.2))
    with bad_input("Meta Fusion data: from_arrays fractions with an empty split",
                   match="3 positive values"):
        _from_arrays(fractions=(1.0, 0.0, 0.0))
    with bad_input("Meta Fusion data: from_arrays fractions of 2 values", match="3 positive values"):
        _from_arrays(fractions=(0.5, 0.5))
    with bad_input("Meta Fusion data: from_arrays unknown task", match="task must be one of"):
        _from_arrays(task="ranking")
    with bad_input("Meta Fusion data: from_arrays one array instead of a list of views",
                   match=r"list of K arrays.*pass \[x\]"):
        _from_arrays(xs=np.zeros((50, 3)))
    with bad_input("Meta Fusion data: from_arrays view with no columns", match="D >= 1"):
        _from_arrays(xs=[np.zeros((50, 0))])
    with bad_input("Meta Fusion data: from_arrays wrong number of modality names",
                   match="2 distinct names"):
        _from_arrays(modality_names=("a",))
    with bad_input("Meta Fusion data: n_classes given for regression",
                   match="n_classes must be None or 1 for regression"):
        MultiModalData.from_arrays(_xs(), np.zeros(50), task="regression", n_classes=3)


def test_too_few_rows_and_too_small_classes():
    # 2 rows: test ceil(0.2 * 2) = 1, val ceil(0.25 * 1) = 1, train 0.
    with bad_input("Meta Fusion data: from_arrays of 2 rows",
                   match=r"\(train, val, test\) = \(0, 1, 1\) rows, below the minimum"):
        MultiModalData.from_arrays(_xs(2), np.zeros(2), task="regression")
    with bad_input("Meta Fusion data: a class too small to stratify",
                   match=r"stratified by class \(rows per class \[49, 1\]\)"):
        MultiModalData.from_arrays(_xs(), np.r_[np.zeros(49, int), 1], task="classification")


def test_split_indices_fraction_and_size_forms_agree():
    y = np.repeat(np.arange(4), 25)
    a = split_indices(100, seed=5, fractions=(0.6, 0.2, 0.2), stratify=y)
    b = split_indices(100, seed=5, test_size=0.2, val_size=0.25, stratify=y)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert [len(u) for u in a] == [60, 20, 20]


def test_validate_data_checks_hand_built_containers():
    good = MultiModalData.from_arrays(_xs(), np.arange(50) % 5, task="classification")
    assert validate_data(good).sizes == good.sizes
    bad_width = good._replace(test=Split((good.test.xs[0][:, :2], good.test.xs[1]), good.test.y))
    with bad_input("Meta Fusion data: hand-built splits with different modality widths",
                   match="widths differ across splits"):
        validate_data(bad_width)
    empty = good._replace(val=Split(tuple(x[:0] for x in good.val.xs), good.val.y[:0]))
    with bad_input("Meta Fusion data: hand-built data with an empty split",
                   match="the val split is empty"):
        validate_data(empty)
    with bad_input("Meta Fusion data: hand-built regression data with n_classes 5",
                   match="n_classes must be 1 for regression"):
        validate_data(good._replace(task="regression"))
    with bad_input("Meta Fusion data: hand-built labels >= n_classes",
                   match=r"labels must lie in \[0, 3\)"):
        validate_data(good._replace(n_classes=3))
    with bad_input("Meta Fusion data: hand-built data with too few modality names",
                   match="1 modality_names for 2 modalities"):
        validate_data(good._replace(modality_names=("a",)))
    with bad_input("Meta Fusion data: not a MultiModalData", match="expected a MultiModalData"):
        validate_data({"train": None})
