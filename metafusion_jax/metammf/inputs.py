"""What the MetaMMF trainer builds before it trains: a checked config, data, model and jit inputs.

The one place config strings become code: `LOADERS` picks the data loader (`config.data.source`)
and `models.MODELS` the model (`config.model.name`). Everything is checked here, before anything
trains or is written: the config fields (`validate_config`, including every model field), the data
(`validate_interactions`, also for data passed in by the caller) and the config against the data
(`pca_dims_for`).
"""
from absl import logging
import jax
import jax.numpy as jnp

from metafusion_jax.data.rec import interactions
from metafusion_jax.data.rec import mmgcn
from metafusion_jax.data.rec import mmrec
from metafusion_jax.data.rec import movielens
from metafusion_jax.data.rec import synthetic as synthetic_rec
from metafusion_jax.metammf import features as features_lib
from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import models
from metafusion_jax.training import mesh as mesh_lib

DATA_ARG_SOURCE = "train_and_evaluate(data=...)"
# config.data fields that only pick and load a dataset: unused when the caller passes `data`.
LOADER_FIELDS = ("source", "dir", "name", "seed", "n_users", "n_items", "n_interactions",
                 "modality_dims", "feature_files")


def _load_ml100k(data_cfg):
    return movielens.load_ml100k(directory=data_cfg.dir or None, seed=data_cfg.seed)


def _load_synthetic(data_cfg):
    data, _ = synthetic_rec.make_synthetic_microvideo(
        n_users=data_cfg.n_users, n_items=data_cfg.n_items,
        n_interactions=data_cfg.n_interactions,
        modality_dims=dict(data_cfg.modality_dims) or None, seed=data_cfg.seed)
    return data


def _load_mmgcn(data_cfg):
    return mmgcn.load_mmgcn(data_cfg.dir, feature_files=dict(data_cfg.feature_files) or None,
                            name=data_cfg.name or None)


def _load_mmrec(data_cfg):
    return mmrec.load_mmrec(data_cfg.dir, data_cfg.name)


# The one place a config string picks a data loader.
LOADERS = {
    "ml100k": _load_ml100k,
    "synthetic": _load_synthetic,
    "mmgcn": _load_mmgcn,
    "mmrec": _load_mmrec,
}


def _require(ok, field, expected, actual):
    if not ok:
        raise ValueError(
            f"config.{field} must be {expected}, got {actual!r}. Fix it in configs/metammf.py "
            f"or override it with --config.{field}=...")


def _is_pairs(value, second_type):
    return isinstance(value, (tuple, list)) and all(
        isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str)
        and isinstance(p[1], second_type) for p in value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_dropout_pair(value):
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(r, (int, float)) and not isinstance(r, bool) and 0.0 <= r < 1.0
        for r in value)


def _as_dict(node):
    return node.to_dict() if hasattr(node, "to_dict") else dict(node)


def _check_model_fields(model_cfg):
    """Every config.model field belongs to some model; the chosen model's group has no extras."""
    name = model_cfg.name
    spec = models.MODELS[name]
    shared = {o for s in models.MODELS.values() if not s.config_group for o in s.options}
    groups = {s.config_group for s in models.MODELS.values() if s.config_group}
    fields = _as_dict(model_cfg)
    for key, value in fields.items():
        if key == "name" or key in shared:
            continue
        if key in groups and isinstance(value, dict):
            continue
        raise ValueError(
            f"config.model.{key} is not a field of any model (config.model.name={name!r}). "
            f"Shared MetaMMF fields: {sorted(shared)}; per-model groups: {sorted(groups)}.")
    if spec.config_group:
        unknown = sorted(set(fields.get(spec.config_group, {})) - set(spec.options))
        if unknown:
            raise ValueError(
                f"config.model.{spec.config_group}.{unknown[0]} is not an option of model "
                f"{name!r}; its options are {list(spec.options)}.")


def validate_config(config):
    """Checks the fields the loop reads; raises ValueError naming the first bad one."""
    _require(config.data.source in LOADERS, "data.source", f"one of {sorted(LOADERS)}",
             config.data.source)
    _require(_is_pairs(config.data.pca_dims, int), "data.pca_dims",
             "a tuple of (modality, int) pairs, e.g. (('visual', 64),)", config.data.pca_dims)
    _require(_is_pairs(config.data.feature_files, str), "data.feature_files",
             "a tuple of (modality, file name) pairs", config.data.feature_files)
    _require(config.model.name in models.MODELS, "model.name",
             f"one of {sorted(models.MODELS)}", config.model.name)
    _check_model_fields(config.model)
    for field in ("num_epochs", "eval_every", "patience", "batch_size", "num_negatives"):
        value = config[field]
        _require(_is_int(value) and value >= 1, field, "an int >= 1", value)
    _require(isinstance(config.max_epochs_this_run, int) and config.max_epochs_this_run >= 0,
             "max_epochs_this_run", "an int >= 0 (0: no limit)", config.max_epochs_this_run)
    _require(config.learning_rate > 0, "learning_rate", "> 0", config.learning_rate)
    _require(config.weight_decay >= 0, "weight_decay", ">= 0", config.weight_decay)
    _require(config.negatives in ("resample", "static"), "negatives",
             "'resample' or 'static'", config.negatives)
    _require(_is_int(config.eval_chunk) and config.eval_chunk >= 1, "eval_chunk",
             "an int >= 1 (users scored at once in evaluation)", config.eval_chunk)
    _require(_is_int(config.seed), "seed", "an int", config.seed)
    _require(_is_dropout_pair(config.model.gcn_dropout), "model.gcn_dropout",
             "two dropout rates in [0, 1) (after GCN layer 1, on its output), e.g. (0.5, 0.2); "
             "a rate of 1 drops everything and gives NaN gradients", config.model.gcn_dropout)
    for field in ("progress", "data.pca_skip_absent", "data.standardize"):
        node, leaf = (config.data, field[5:]) if field.startswith("data.") else (config, field)
        _require(isinstance(node.get(leaf, False), bool), field, "True or False",
                 node.get(leaf))
    error = mesh_lib.mesh_spec_error(config.mesh, jax.device_count())
    if error:
        raise ValueError(error)
    n_data = mesh_lib.axis_size(config.mesh, "data", jax.device_count())
    _require(config.batch_size % n_data == 0, "batch_size",
             f"a multiple of the {n_data} devices of the mesh's 'data' axis (config.mesh "
             f"{tuple(config.mesh)}; the batch is split over them), e.g. "
             f"{n_data * max(1, round(config.batch_size / n_data))}", config.batch_size)


def model_kwargs(model_cfg):
    """The chosen model's options from config.model: {option: value} (missing: factory default).

    The MetaMMF family reads `config.model.<option>`, a baseline `config.model.<name>.<option>`
    (see `models.ModelSpec`). Lists become tuples.
    """
    spec = models.MODELS[model_cfg.name]
    node = _as_dict(model_cfg)
    if spec.config_group:
        node = node.get(spec.config_group, {})
    return {k: tuple(node[k]) if isinstance(node[k], list) else node[k]
            for k in spec.options if k in node}


def load_data(config, data=None):
    """config.data's dataset, or `data` (validated again) when the caller passes one."""
    if data is None:
        return LOADERS[config.data.source](config.data)
    if not isinstance(data, interactions.InteractionData):
        raise ValueError(
            f"data must be an InteractionData (e.g. InteractionData.from_pairs(...) or a "
            f"loader's output), got {type(data).__name__}.")
    return interactions.validate_interactions(data, source=DATA_ARG_SOURCE)


def pca_dims_for(data_cfg, data):
    """config.data.pca_dims checked against the data's modalities: {modality: components}.

    Raises:
        ValueError: an entry names a modality the data lacks (unless data.pca_skip_absent, which
            drops it with a log line), or asks for more components than min(D_k, I).
    """
    pca_dims = dict(data_cfg.pca_dims)
    absent = [m for m in pca_dims if m not in data.features]
    if absent and data_cfg.pca_skip_absent:
        logging.info("%s has no modalities %s: dropping their config.data.pca_dims entries.",
                     data.name, absent)
        pca_dims = {m: d for m, d in pca_dims.items() if m in data.features}
    elif absent:
        raise ValueError(
            f"config.data.pca_dims names modalities {absent} that the data {data.name!r} lacks "
            f"(its modalities: {list(data.features)}). Drop those entries, or set "
            "config.data.pca_skip_absent=True to drop them with a log line.")
    for modality, dim in pca_dims.items():
        width = data.features[modality].shape[1]
        if not 1 <= dim <= min(width, data.n_items):
            raise ValueError(
                f"config.data.pca_dims[{modality!r}]={dim} must lie in [1, min(D_k={width}, "
                f"I={data.n_items})] for the data {data.name!r}. Lower it or drop the entry.")
    return pca_dims


def build(config, data=None):
    """Loads (or checks) the data, prepares features and builds the recommender and its inputs.

    Args:
        config: a validated ConfigDict (`validate_config`).
        data: optional `InteractionData` to train on instead of config.data.source/dir.

    Returns:
        (data: InteractionData, model: Recommender, inputs: dict of device arrays with
        "features" float32 [I, F], "graph" and the model's `prepare_inputs` arrays).

    Raises:
        ValueError: on bad data, a config that contradicts the data, or a bad model field.
    """
    data = load_data(config, data)
    feat, modality_slices = features_lib.prepare_item_features(
        data.features, pca_dims_for(config.data, data) or None,
        standardize=config.data.get("standardize", False))
    features_lib.check_feature_scale(feat, modality_slices, data.name)
    spec = models.MODELS[config.model.name]
    model = spec.factory(n_users=data.n_users, n_items=data.n_items,
                         feature_dim=int(feat.shape[1]), modality_slices=modality_slices,
                         **model_kwargs(config.model))
    graph = graph_lib.make_bipartite_graph(data.train, data.n_users, data.n_items)
    extra = model.prepare_inputs(feat, modality_slices, graph)
    clash = sorted(set(extra) & {"features", "graph"})
    if clash:
        raise ValueError(f"model {config.model.name!r}: prepare_inputs must not return the keys "
                         f"{clash}; the trainer sets them.")
    inputs = {"features": feat, "graph": graph, **extra}
    return data, model, jax.tree.map(jnp.asarray, inputs)
