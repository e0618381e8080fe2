"""TFDS builders (array_record, no TensorFlow) for the four recommendation sources.

Every builder writes the same layout:
    splits train / val / test: one example per interaction {user, item, <modality>: empty}
    split items:               one example per item {user: -1, item, <modality>: float32 [D_k]}
    metadata:                  n_users, n_items, modalities (names in order), name
One FeaturesDict serves all splits (TFDS has a single schema per dataset), so the modality
tensors are variable-length and left empty in the interaction splits.

Usage (prepare once, then read straight into numpy):
    builder = MetafusionMmgcn(data_dir=..., file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=dir))
    data = load_from_tfds(builder)          # or load_from_tfds("<data_dir>/metafusion_mmgcn/...")
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from metafusion_jax.data.rec import interactions
from metafusion_jax.data.rec import mmgcn
from metafusion_jax.data.rec import mmrec
from metafusion_jax.data.rec import movielens
from metafusion_jax.data.rec import synthetic as synthetic_rec

VERSION = tfds.core.Version("1.0.0")
READ_BATCH = 65536


def _features(modalities):
    spec = {"user": np.int32, "item": np.int32}
    spec.update({m: tfds.features.Tensor(shape=(None,), dtype=np.float32) for m in modalities})
    return tfds.features.FeaturesDict(spec)


class _InteractionBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared `_info` / `_split_generators`; subclasses implement `_load(dl_manager)`."""

    VERSION = VERSION
    # No download checksums to look up; the base class would locate them via code_path, which
    # needs the optional `importlib_resources` package for builders inside an installed package.
    code_path = None

    def _modalities(self):
        raise NotImplementedError

    def _load(self, dl_manager):
        raise NotImplementedError

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=_features(self._modalities()),
                                     metadata=tfds.core.MetadataDict(),
                                     description=self.__doc__, disable_shuffling=True)

    def _split_generators(self, dl_manager):
        data = self._load(dl_manager)
        if list(data.features) != list(self._modalities()):
            raise ValueError(f"{self.name}: loaded modalities {list(data.features)} differ from "
                             f"the builder config's {list(self._modalities())}.")
        self.info.metadata.update(name=data.name, n_users=data.n_users, n_items=data.n_items,
                                  modalities=list(data.features))
        out = {s: self._generate_examples(getattr(data, s), data.features)
               for s in interactions.SPLITS}
        out["items"] = self._generate_examples(None, data.features)
        return out

    def _generate_examples(self, pairs, features):
        """Yields interaction examples for `pairs` [E, 2], or item examples if pairs is None."""
        if pairs is None:
            for i in range(len(next(iter(features.values())))):
                yield i, {"user": -1, "item": i, **{m: x[i] for m, x in features.items()}}
            return
        empty = {m: np.zeros((0,), np.float32) for m in features}
        for k, (u, i) in enumerate(np.asarray(pairs).tolist()):
            yield k, {"user": u, "item": i, **empty}


@dataclasses.dataclass(eq=False)
class MmgcnConfig(tfds.core.BuilderConfig):
    """feature_files: ((modality, file name), ...); n_users: the id offset or None to infer."""

    feature_files: tuple = tuple(mmgcn.MOVIELENS_FEATURE_FILES.items())
    n_users: int | None = None


class MetafusionMmgcn(_InteractionBuilder):
    """MMGCN micro-video layout (MovieLens / TikTok / Kwai) from the manual directory."""

    BUILDER_CONFIGS = [MmgcnConfig(name="movielens", version=VERSION)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put train.npy, val_full.npy, test_full.npy, user_item_dict.npy and the feature .npy "
        "files of the MMGCN layout in the manual directory.")

    def _modalities(self):
        return [m for m, _ in self.builder_config.feature_files]

    def _load(self, dl_manager):
        return mmgcn.load_mmgcn(str(dl_manager.manual_dir),
                                feature_files=dict(self.builder_config.feature_files),
                                n_users=self.builder_config.n_users)


@dataclasses.dataclass(eq=False)
class MmrecConfig(tfds.core.BuilderConfig):
    """The config name is the `.inter` stem; modalities as `load_mmrec` orders them."""

    modalities: tuple = mmrec.FIRST_MODALITIES


class MetafusionMmrec(_InteractionBuilder):
    """MMRec layout (Amazon Baby / Sports / Clothing) from the manual directory."""

    BUILDER_CONFIGS = [MmrecConfig(name=n, version=VERSION) for n in ("baby", "sports",
                                                                      "clothing")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put <name>.inter, image_feat.npy and text_feat.npy there."

    def _modalities(self):
        return list(self.builder_config.modalities)

    def _load(self, dl_manager):
        return mmrec.load_mmrec(str(dl_manager.manual_dir), self.builder_config.name)


@dataclasses.dataclass(eq=False)
class Ml100kConfig(tfds.core.BuilderConfig):
    """directory: ml-100k files (None: the recbole wheel's copy); seed: split seed."""

    directory: str | None = None
    seed: int = 0


class MetafusionMl100k(_InteractionBuilder):
    """Real MovieLens-100k with title / genre_year / kg modalities (see data.movielens)."""

    BUILDER_CONFIGS = [Ml100kConfig(name="seed0", version=VERSION)]

    def _modalities(self):
        return ["title", "genre_year", "kg"]

    def _load(self, dl_manager):
        del dl_manager
        return movielens.load_ml100k(self.builder_config.directory, self.builder_config.seed)


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    """Arguments of `make_synthetic_microvideo`; modality_dims as ((name, D), ...)."""

    n_users: int = 1000
    n_items: int = 500
    n_interactions: int = 20000
    modality_dims: tuple = tuple(synthetic_rec.DEFAULT_MODALITY_DIMS.items())
    seed: int = 0


class MetafusionSynthetic(_InteractionBuilder):
    """Synthetic micro-video data with per-item driver modalities (see data.synthetic_rec)."""

    BUILDER_CONFIGS = [
        SyntheticConfig(name="small", version=VERSION),
        SyntheticConfig(name="movielens_size", version=VERSION, n_users=55485, n_items=5986,
                        n_interactions=1239508,
                        modality_dims=(("visual", 2048), ("acoustic", 128), ("textual", 100))),
    ]

    def _modalities(self):
        return [m for m, _ in self.builder_config.modality_dims]

    def _load(self, dl_manager):
        del dl_manager
        c = self.builder_config
        data, _ = synthetic_rec.make_synthetic_microvideo(
            c.n_users, c.n_items, c.n_interactions, modality_dims=dict(c.modality_dims),
            seed=c.seed)
        return data


def _read_split(source, keys):
    """Reads whole columns of one split via `__getitems__` in batches."""
    n = len(source)
    columns = {k: [] for k in keys}
    for start in range(0, n, READ_BATCH):
        batch = source.__getitems__(list(range(start, min(start + READ_BATCH, n))))
        for k in keys:
            columns[k].append([example[k] for example in batch])
    return {k: np.asarray(sum(v, [])) for k, v in columns.items()}


def load_from_tfds(builder_or_dir):
    """Reads a prepared builder (or its data directory) back into validated `InteractionData`.

    Args:
        builder_or_dir: a prepared `tfds.core.DatasetBuilder`, or the directory holding its
            dataset_info.json (as `tfds.builder_from_directory` takes it).

    Returns:
        `InteractionData` with the splits and modalities the builder wrote.

    Raises:
        ValueError: if the metadata lacks n_users / n_items / modalities, or validation fails.
    """
    builder = builder_or_dir
    if not isinstance(builder, tfds.core.DatasetBuilder):
        builder = tfds.builder_from_directory(str(builder_or_dir))
    meta = builder.info.metadata or {}
    missing = [k for k in ("n_users", "n_items", "modalities", "name") if k not in meta]
    if missing:
        raise ValueError(f"{builder.data_dir}: dataset metadata lacks {missing}; was it written "
                         "by a metafusion_jax builder?")
    sources = builder.as_data_source()
    splits = {}
    for split in interactions.SPLITS:
        cols = _read_split(sources[split], ("user", "item"))
        splits[split] = np.stack([cols["user"], cols["item"]], axis=1).astype(np.int32)
    modalities = list(meta["modalities"])
    cols = _read_split(sources["items"], ["item"] + modalities)
    order = np.argsort(cols["item"])
    features = {m: cols[m][order].astype(np.float32) for m in modalities}
    data = interactions.InteractionData(name=meta["name"], n_users=int(meta["n_users"]),
                                        n_items=int(meta["n_items"]), features=features,
                                        **splits)
    return interactions.validate_interactions(data, source=str(builder.data_dir))
