"""Round trips of the TFDS builders (array_record, no TensorFlow) on tiny data in tmp dirs."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from metafusion_jax.data.rec import interactions
from metafusion_jax.data.rec import movielens
from metafusion_jax.data.rec import mmgcn
from metafusion_jax.data.rec import mmrec
from metafusion_jax.data.rec import synthetic as synthetic_rec
from metafusion_jax.data.rec import tfds as tb

VERSION = "1.0.0"


def _assert_same(a, b):
    assert (a.name, a.n_users, a.n_items) == (b.name, b.n_users, b.n_items)
    for s in interactions.SPLITS:
        np.testing.assert_array_equal(getattr(a, s), getattr(b, s))
    assert list(a.features) == list(b.features)
    for m in a.features:
        np.testing.assert_array_equal(a.features[m], b.features[m])


def _prepare(builder, manual_dir=None):
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir)) if manual_dir else None
    builder.download_and_prepare(download_config=config)
    return builder


def test_synthetic_round_trip_and_from_directory(tmp_path):
    config = tb.SyntheticConfig(name="tiny", version=VERSION, n_users=40, n_items=30,
                                n_interactions=500, modality_dims=(("v", 5), ("t", 3)), seed=4)
    builder = _prepare(tb.MetafusionSynthetic(config=config, data_dir=str(tmp_path / "d"),
                                              file_format="array_record"))
    ref, _ = synthetic_rec.make_synthetic_microvideo(40, 30, 500, {"v": 5, "t": 3}, seed=4)
    _assert_same(tb.load_from_tfds(builder), ref)
    assert builder.info.metadata["n_items"] == 30
    assert builder.info.splits["items"].num_examples == 30
    _assert_same(tb.load_from_tfds(builder.data_dir), ref)
    source = tfds.builder_from_directory(builder.data_dir).as_data_source()["train"]
    first = source[0]
    assert (int(first["user"]), int(first["item"])) == tuple(ref.train[0])
    assert first["v"].shape == (0,)  # modality tensors are empty in interaction splits


def test_mmgcn_from_manual_dir(tmp_path):
    ref, _ = synthetic_rec.make_synthetic_microvideo(20, 24, 200, {"visual": 4, "acoustic": 2,
                                                                   "textual": 3}, seed=5)
    mmgcn.write_mmgcn(tmp_path / "manual", ref, feature_files=mmgcn.MOVIELENS_FEATURE_FILES)
    config = tb.MmgcnConfig(name="tiny", version=VERSION)
    builder = _prepare(tb.MetafusionMmgcn(config=config, data_dir=str(tmp_path / "d"),
                                          file_format="array_record"), tmp_path / "manual")
    _assert_same(tb.load_from_tfds(builder), ref._replace(name="manual"))


def test_mmrec_from_manual_dir(tmp_path):
    ref, _ = synthetic_rec.make_synthetic_microvideo(20, 24, 200, {"image": 4, "text": 2}, seed=6)
    ref = ref._replace(name="baby")
    mmrec.write_mmrec(tmp_path / "manual", ref)
    builder = _prepare(tb.MetafusionMmrec(config="baby", data_dir=str(tmp_path / "d"),
                                          file_format="array_record"), tmp_path / "manual")
    _assert_same(tb.load_from_tfds(builder), ref)


def test_ml100k_builder_on_generated_files(tmp_path):
    os.makedirs(tmp_path / "ml")
    items = [f"{k}\tFilm {k}\t{1990 + k}\t{'Drama' if k % 2 else 'Comedy War'}" for k in range(10)]
    files = {
        "inter": ["user_id:token\titem_id:token"] + [f"{u}\t{k}" for u in range(3)
                                                      for k in range(10)],
        "item": ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
                + items,
        "kg": ["head_id:token\trelation_id:token\ttail_id:token", "e1\tr\te2", "e2\ts\te3"],
        "link": ["item_id:token\tentity_id:token", "1\te1", "2\te2"],
    }
    for name, lines in files.items():
        (tmp_path / "ml" / f"ml-100k.{name}").write_text("\n".join(lines) + "\n")
    ref = movielens.load_ml100k(str(tmp_path / "ml"), seed=1)
    config = tb.Ml100kConfig(name="tiny", version=VERSION, directory=str(tmp_path / "ml"), seed=1)
    builder = _prepare(tb.MetafusionMl100k(config=config, data_dir=str(tmp_path / "d"),
                                           file_format="array_record"))
    _assert_same(tb.load_from_tfds(builder), ref)


def test_missing_manual_files_and_metadata(tmp_path):
    os.makedirs(tmp_path / "manual")
    (tmp_path / "manual" / "README").write_text("not the data")
    builder = tb.MetafusionMmgcn(config=tb.MmgcnConfig(name="e", version=VERSION),
                                 data_dir=str(tmp_path / "d"), file_format="array_record")
    with pytest.raises(ValueError, match="train.npy: missing train file"):
        _prepare(builder, tmp_path / "manual")
    with pytest.raises(OSError, match="nowhere/dataset_info.json"):
        tb.load_from_tfds(str(tmp_path / "nowhere"))
