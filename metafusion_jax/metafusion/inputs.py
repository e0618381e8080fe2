"""Meta Fusion run inputs: config validation, data sources and the stacked cohort of `train`.

`validate_config(config)` checks a `configs/metafusion.py` ConfigDict; `DATA_SOURCES` maps
`config.data.source` to a loader (config, seed) -> `multiview.MultiModalData`; `build_cohort`
turns the per-seed data into the cohort spec, model, stacked initial params [S, M, ...] and
stacked inputs {"x_<split>": K arrays [S, N, .], "y_<split>": [S, N]}.
"""
import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.data.multiview import mfeat as multiview
from metafusion_jax.data.multiview import simulator
from metafusion_jax.metafusion import cohort as cohort_lib
from metafusion_jax.metafusion import extractors
from metafusion_jax.metafusion.evaluation import METRICS, SPLITS

EXTRACTORS = ("pca", "separate", "encoder")
WEIGHT_TYPES = ("clustering", "adversarial", "uniform")


def config_error(field, expected, got, fix=""):
    """Raises ValueError: config.<field>: expected <expected>, got <got>. <fix>"""
    raise ValueError(f"config.{field}: expected {expected}, got {got!r}. {fix}".strip())


def validate_config(config) -> None:
    """Raises ValueError naming the field, the expected and the actual value."""
    if config.data.source not in DATA_SOURCES:
        config_error("data.source", f"one of {sorted(DATA_SOURCES)}", config.data.source)
    if config.data.source == "simulator" and config.data.setting not in simulator.SETTINGS:
        config_error("data.setting", f"one of {sorted(simulator.SETTINGS)}", config.data.setting)
    if config.task not in METRICS:
        config_error("task", f"one of {sorted(METRICS)}", config.task)
    if (config.task == "regression") != (config.num_classes == 1) or config.num_classes < 1:
        config_error("num_classes", "1 for regression, >= 2 for classification", config.num_classes)
    for field, value in (("num_seeds", config.num_seeds), ("train.epochs", config.train.epochs),
                         ("train.batch_size", config.train.batch_size),
                         ("ensembles.meta_learner_epochs", config.ensembles.meta_learner_epochs)):
        if int(value) < 1:
            config_error(field, "an integer >= 1", value)
    if not config.train.learning_rate > 0:
        config_error("train.learning_rate", "a positive float", config.train.learning_rate)
    rhos = [float(r) for r in config.rho_list]
    if len(rhos) < 2 or rhos[0] != 0.0 or any(r <= 0 for r in rhos[1:]):
        config_error("rho_list", "0 followed by one or more positive values", rhos,
                     "e.g. [0, 0.99, 3].")
    if config.divergence_weights not in WEIGHT_TYPES:
        config_error("divergence_weights", f"one of {WEIGHT_TYPES}", config.divergence_weights)
    if config.cohort.extractor not in EXTRACTORS:
        config_error("cohort.extractor", f"one of {EXTRACTORS}", config.cohort.extractor)
    if len(config.cohort.mod_hiddens) != len(config.cohort.mod_outs):
        config_error("cohort.mod_hiddens",
                     f"{len(config.cohort.mod_outs)} lists (one per modality)",
                     config.cohort.mod_hiddens)
    if not config.cohort.head_hiddens or any(int(h) < 1 for h in config.cohort.head_hiddens):
        config_error("cohort.head_hiddens", "a non-empty list of positive widths",
                     config.cohort.head_hiddens)
    if config.optimal_k < 0:
        config_error("optimal_k", "0 (silhouette) or a cluster count >= 1", config.optimal_k)
    if config.baselines.coop and config.task != "regression":
        config_error("baselines.coop",
                     "False for classification (Coop is 2-modality regression)", True)


def _load_simulator(config, seed):
    noise = config.data.noise_ratios
    overrides = {"noise_ratios": tuple(noise)} if noise else {}
    return simulator.make_synthetic(config.data.setting, seed=seed, n=config.data.n or None,
                                    int_truncation=config.data.truncate_interactions, **overrides)


def _load_mfeat(config, seed):
    data = multiview.load_mfeat(config.data.mfeat_dir or None, views=list(config.data.views),
                                seed=seed)
    # The views have very different scales (counts, correlations, moments): standardise each
    # column with train+val statistics, as the reference's real-data cleaning does on train folds.
    fit = [np.concatenate([a, b]) for a, b in zip(data.train.xs, data.val.xs)]
    mean = [f.mean(0) for f in fit]
    std = [np.where(f.std(0) > 0, f.std(0), 1.0) for f in fit]
    scale = lambda s: multiview.Split(tuple(((x - mu) / sd).astype(np.float32)
                                            for x, mu, sd in zip(s.xs, mean, std)), s.y)
    return data._replace(train=scale(data.train), val=scale(data.val), test=scale(data.test))


DATA_SOURCES = {"simulator": _load_simulator, "mfeat": _load_mfeat}


def stack_splits(datas, to_inputs):
    """Per-seed MultiModalData -> {"x_<split>": K [S, N, .], "y_<split>": [S, N]}."""
    out = {}
    per_seed = [to_inputs(d) for d in datas]
    for i, split in enumerate(SPLITS):
        out[f"x_{split}"] = tuple(jnp.asarray(np.stack(x)) for x in zip(*[p[i] for p in per_seed]))
        out[f"y_{split}"] = jnp.asarray(np.stack([getattr(d, split).y for d in datas]))
    return out


def pca_layout(data, spec):
    """Train/val/test inputs in the PCA extractor layout, fitted on train+val (reference, B10)."""
    sizes = [len(getattr(data, s).y) for s in SPLITS]
    xs = [np.concatenate([getattr(data, s).xs[m] for s in SPLITS]) for m in range(len(data.dims))]
    full = extractors.pca_inputs(xs, np.arange(sizes[0] + sizes[1]), spec)
    cuts = np.cumsum(sizes)[:-1]
    return tuple(tuple(parts) for parts in zip(*[np.split(x, cuts) for x in full]))


def raw_layout(data):
    return tuple(getattr(data, s).xs for s in SPLITS)


def build_cohort(config, datas, init_keys):
    """Cohort spec, model, stacked initial params [S, M, ...] and stacked inputs [S, ...]."""
    dims = datas[0].dims
    mod_outs = [list(m) + ([p] if config.cohort.add_full and p not in m else [])
                for m, p in zip(config.cohort.mod_outs, dims)]
    spec = cohort_lib.make_cohort_spec(mod_outs, dims)
    head = dict(hidden=tuple(config.cohort.head_hiddens), out_dim=config.num_classes)
    kind = config.cohort.extractor
    if kind == "pca":
        model = cohort_lib.make_cohort(spec, extractors.make_pca_extractor(spec), **head)
        return spec, model, jax.vmap(model.init)(init_keys), stack_splits(
            datas, lambda d: pca_layout(d, spec))
    if kind == "separate":
        ext = extractors.make_separate_extractor(
            spec, mod_hiddens=config.cohort.mod_hiddens, freeze=config.cohort.freeze_encoder)
        model = cohort_lib.make_cohort(spec, ext, **head)
        return spec, model, jax.vmap(model.init)(init_keys), stack_splits(datas, raw_layout)
    # encoder: one pre-trained chain per modality and seed; the member functions are shared.
    params = []
    for data, key in zip(datas, init_keys):
        chains = []
        for m in range(spec.num_modalities):
            lat = [d for d in spec.mod_outs[m] if 0 < d < dims[m]]
            chains.append(None if not lat else extractors.pretrain_chain(
                jax.random.fold_in(key, 1000 + m), data.train.xs[m], data.train.y,
                data.val.xs[m], data.val.y, hidden=config.cohort.mod_hiddens[m],
                latent_dims=lat, out_dim=config.num_classes, task=config.task,
                learning_rate=config.train.learning_rate, epochs=config.cohort.encoder_epochs))
        ext = extractors.make_encoder_extractor(spec, chains, mod_hiddens=config.cohort.mod_hiddens,
                                                freeze=config.cohort.freeze_encoder)
        model = cohort_lib.make_cohort(spec, ext, **head)
        params.append(model.init(key))
    return spec, model, cohort_lib.stack(params), stack_splits(datas, raw_layout)


def resolve(config, data, seeds):
    """The run's effective config and per-seed data (the trainer's one entry to its inputs).

    Args:
      config: a `metafusion_jax.configs.metafusion` ConfigDict.
      data: None (the built-in `config.data.source`), one `MultiModalData` used by every seed,
        or a function seed -> `MultiModalData` (each seed its own split or draw).
      seeds: the S seeds of the run.

    Returns:
      (config, datas): a copy of `config` with the fields that come from the data filled in
      (task, num_classes, per-modality cohort dims), and a list of S validated `MultiModalData`.

    Raises:
      ValueError: a config value that contradicts the data, or bad data (before anything trains).
    """
    # Interface stub: the full checks (config vs data, `default` variant dims) come next.
    if data is None:
        datas = [DATA_SOURCES[config.data.source](config, s) for s in seeds]
    elif callable(data) and not isinstance(data, multiview.MultiModalData):
        datas = [data(s) for s in seeds]
    else:
        datas = [data for _ in seeds]
    return config, datas
