"""Round trip of the mfeat TFDS builder (array_record) on small generated CSVs."""
import numpy as np
import tensorflow_datasets as tfds

from metafusion_jax.data.multiview.mfeat import MFEAT_VIEWS, load_mfeat
from metafusion_jax.data.multiview.tfds import SPLITS, build_mfeat, load_mfeat_tfds


def _write_fake_mfeat(directory, n=50, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) * 10 // n
    for v, d in MFEAT_VIEWS.items():
        rows = np.concatenate([rng.normal(size=(n, d)), labels[:, None]], 1)
        header = ",".join([str(i) for i in range(d)] + ["0"])
        np.savetxt(directory / f"mfeat-{v}.csv", rows, delimiter=",", header=header, comments="",
                   fmt="%.7g")


def test_round_trip_equals_direct_loader(tmp_path):
    src = tmp_path / "csv"
    src.mkdir()
    _write_fake_mfeat(src)
    data_dir = str(tmp_path / "tfds")
    built = load_mfeat_tfds(data_dir, seed=4, source_dir=str(src))
    direct = load_mfeat(str(src), seed=4)
    again = load_mfeat_tfds(data_dir, seed=4, source_dir=str(src), build=False)
    assert built.dims == tuple(MFEAT_VIEWS.values())
    for name in SPLITS:
        ref = getattr(direct, name)
        for got in (getattr(built, name), getattr(again, name)):
            assert got.y.dtype == np.int32 and got.y.tolist() == ref.y.tolist()
            for a, b in zip(got.xs, ref.xs):
                assert a.dtype == np.float32
                np.testing.assert_array_equal(a, b)
    assert [len(getattr(built, s).y) for s in SPLITS] == [30, 10, 10]


def test_fresh_reader_from_directory_and_split_seed_directories(tmp_path):
    src = tmp_path / "csv"
    src.mkdir()
    _write_fake_mfeat(src, seed=1)
    b0 = build_mfeat(str(tmp_path / "tfds"), seed=0, source_dir=str(src))
    b1 = build_mfeat(str(tmp_path / "tfds"), seed=1, source_dir=str(src))
    assert b0.data_dir != b1.data_dir
    reread = tfds.builder_from_directory(b1.data_dir).as_data_source()
    direct = load_mfeat(str(src), seed=1)
    record = reread["test"][3]
    np.testing.assert_array_equal(record["zer"], direct.test.xs[4][3])
    assert record["label"] == direct.test.y[3]
    assert len(reread["train"]) == 30
