"""Meta Fusion run inputs: config checks, data sources, the config filled from the data, the cohort.

The trainer's path: `validate_config(config)`; `resolve(config, data, seeds)` -> (a copy of the
config with the fields that come from the data filled in, S validated `MultiModalData`);
`build_cohort(config, datas, init_keys)` -> cohort spec, model, stacked initial params
[S, M, ...] and stacked inputs {"x_<split>": K arrays [S, N, .], "y_<split>": [S, N]}.
`DATA_SOURCES` maps `config.data.source` to a loader (config, seed) -> `MultiModalData`.

Letters: S seeds, N rows, K modalities, D_k widths, M members, C classes.
"""
from typing import Callable, Optional, Sequence, Union

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.data.multiview import mfeat
from metafusion_jax.data.multiview import simulator
from metafusion_jax.data.multiview.container import SPLITS, TASKS, MultiModalData, Split
from metafusion_jax.data.multiview.container import min_rows, min_split_rows, split_sizes
from metafusion_jax.data.multiview.container import validate_data
from metafusion_jax.metafusion import cohort as cohort_lib
from metafusion_jax.metafusion import extractors

EXTRACTORS = ("pca", "separate", "encoder")
WEIGHT_TYPES = ("clustering", "adversarial", "uniform")


def config_error(field, expected, got, fix=""):
    """Raises ValueError: config.<field>: expected <expected>, got <got>. <fix>"""
    raise ValueError(f"config.{field}: expected {expected}, got {got!r}. {fix}".strip())


def _is_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _check_int_tuple(field, values, minimum, what):
    """Every entry of `values` an integer >= minimum (a float like 60.5 would be truncated)."""
    bad = [v for v in values if not _is_int(v) or (minimum is not None and v < minimum)]
    if bad:
        config_error(field, f"{what}: integers" + (f" >= {minimum}" if minimum else ""),
                     tuple(values), f"Replace {bad} (e.g. 60, not 60.5).")


def _check_widths_and_rows(config):
    """Integer widths / dims (not 60.5), and a simulator data.n that gives the minimum rows."""
    cohort = config.cohort
    if not cohort.head_hiddens:
        config_error("cohort.head_hiddens", "a non-empty tuple of positive widths",
                     cohort.head_hiddens)
    _check_int_tuple("cohort.head_hiddens", cohort.head_hiddens, 1, "head hidden widths")
    for m, dims_m in enumerate(cohort.mod_outs):
        _check_int_tuple(f"cohort.mod_outs[{m}]", dims_m, None, "cohort dims")
    for m, hidden in enumerate(cohort.mod_hiddens):
        _check_int_tuple(f"cohort.mod_hiddens[{m}]", hidden, 1, "encoder hidden widths")
    n = config.data.n
    if not _is_int(n) or n < 0:
        config_error("data.n", "an integer >= 0 (0: the setting's own sample count)", n)
    need = min_rows(test_size=simulator.TEST_SIZE, val_size=simulator.VAL_SIZE)
    if config.data.source == "simulator" and 0 < n < need:
        config_error("data.n", f"0 or at least {need} rows (the simulator's 0.2 / 0.2 split "
                     f"must leave (train, val, test) >= {min_split_rows()} rows)", n,
                     f"{n} rows split into (train, val, test) = "
                     f"{split_sizes(n, test_size=simulator.TEST_SIZE, val_size=simulator.VAL_SIZE)}"
                     f"; set config.data.n >= {need}, or 0.")


def _check_positive_ints(config):
    for field, value in (("num_seeds", config.num_seeds), ("train.epochs", config.train.epochs),
                         ("train.batch_size", config.train.batch_size),
                         ("ensembles.meta_learner_epochs", config.ensembles.meta_learner_epochs),
                         ("checkpoint_every_epochs", config.checkpoint_every_epochs)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            config_error(field, "an integer >= 1", value)


def validate_config(config) -> None:
    """Raises ValueError naming the field, the expected and the actual value.

    Empty values mean "from the data" and are filled by `resolve`: `task=""`, `num_classes=0`,
    `cohort.mod_outs=()` (dims from `cohort.latent_fractions`), `cohort.mod_hiddens=()`,
    `data.source=""` (the caller passes the data).
    """
    _validate_values(config)
    outs, hiddens = config.cohort.mod_outs, config.cohort.mod_hiddens
    if outs and hiddens and len(hiddens) != len(outs):
        config_error("cohort.mod_hiddens", f"{len(outs)} tuples (one per modality) or ()", hiddens)
    if (config.baselines.coop and config.task == "classification"
            and not config.baselines.coop_auto):
        config_error("baselines.coop",
                     "False for classification (Coop is 2-modality regression)", True)


def _validate_values(config) -> None:
    """The checks of `validate_config` that do not compare fields the data may fill."""
    if config.data.source not in DATA_SOURCES and config.data.source != "":
        config_error("data.source", f"one of {sorted(DATA_SOURCES)} or '' (data passed in)",
                     config.data.source)
    if config.data.source == "simulator" and config.data.setting not in simulator.SETTINGS:
        config_error("data.setting", f"one of {sorted(simulator.SETTINGS)}", config.data.setting)
    if config.task not in TASKS and config.task != "":
        config_error("task", f"one of {TASKS} or '' (from the data)", config.task)
    c = config.num_classes
    if c < 0 or (config.task == "regression" and c not in (0, 1)) or (
            config.task == "classification" and c == 1):
        config_error("num_classes", "1 for regression, >= 2 for classification, 0 (from the data)",
                     c)
    _check_positive_ints(config)
    if not config.train.learning_rate > 0:
        config_error("train.learning_rate", "a positive float", config.train.learning_rate)
    rhos = [float(r) for r in config.rho_list]
    if len(rhos) < 2 or rhos[0] != 0.0 or any(r <= 0 for r in rhos[1:]):
        config_error("rho_list", "0 followed by one or more positive values", rhos,
                     "e.g. (0.0, 0.99, 3.0).")
    if config.divergence_weights not in WEIGHT_TYPES:
        config_error("divergence_weights", f"one of {WEIGHT_TYPES}", config.divergence_weights)
    if config.cohort.extractor not in EXTRACTORS:
        config_error("cohort.extractor", f"one of {EXTRACTORS}", config.cohort.extractor)
    if any(not 0.0 < float(f) < 1.0 for f in config.cohort.latent_fractions):
        config_error("cohort.latent_fractions", "fractions strictly between 0 and 1",
                     config.cohort.latent_fractions, "e.g. (0.25, 0.5).")
    _check_widths_and_rows(config)
    if not _is_int(config.optimal_k) or config.optimal_k < 0:
        config_error("optimal_k", "0 (silhouette) or a cluster count >= 1", config.optimal_k)


def _load_simulator(config, seed):
    noise = config.data.noise_ratios
    overrides = {"noise_ratios": tuple(noise)} if noise else {}
    return simulator.make_synthetic(config.data.setting, seed=seed, n=config.data.n or None,
                                    int_truncation=config.data.truncate_interactions, **overrides)


def _load_mfeat(config, seed):
    data = mfeat.load_mfeat(config.data.mfeat_dir or None, views=list(config.data.views),
                            seed=seed)
    # The views have very different scales (counts, correlations, moments): standardise each
    # column with train+val statistics, as the reference's real-data cleaning does on train folds.
    fit = [np.concatenate([a, b]) for a, b in zip(data.train.xs, data.val.xs)]
    mean = [f.mean(0) for f in fit]
    std = [np.where(f.std(0) > 0, f.std(0), 1.0) for f in fit]
    scale = lambda s: Split(tuple(((x - mu) / sd).astype(np.float32)
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
    """(train xs, val xs, test xs): the raw K arrays of each split (identity / trainable encoders)."""
    return tuple(getattr(data, s).xs for s in SPLITS)


def _mod_outs(config, dims):
    """Per-modality dims lists of the cohort: config.cohort.mod_outs (+ full widths if add_full)."""
    return [list(m) + ([p] if config.cohort.add_full and p not in m else [])
            for m, p in zip(config.cohort.mod_outs, dims)]


def build_cohort(config, datas, init_keys, init_stacked=None):
    """Cohort spec, model, stacked initial params [S, M, ...] and stacked inputs [S, ...].

    init_stacked: (init, keys [S]) -> params [S, M, ...]; default `jax.vmap(init)(keys)` (the
    trainer passes `placement.Placement.init`, which creates them sharded on its mesh).
    """
    init_stacked = init_stacked or (lambda init, keys: jax.vmap(init)(keys))
    dims = datas[0].dims
    spec = cohort_lib.make_cohort_spec(_mod_outs(config, dims), dims)
    head = dict(hidden=tuple(config.cohort.head_hiddens), out_dim=config.num_classes)
    kind = config.cohort.extractor
    if kind == "pca":
        model = cohort_lib.make_cohort(spec, extractors.make_pca_extractor(spec), **head)
        return spec, model, init_stacked(model.init, init_keys), stack_splits(
            datas, lambda d: pca_layout(d, spec))
    if kind == "separate":
        ext = extractors.make_separate_extractor(
            spec, mod_hiddens=config.cohort.mod_hiddens, freeze=config.cohort.freeze_encoder)
        model = cohort_lib.make_cohort(spec, ext, **head)
        return spec, model, init_stacked(model.init, init_keys), stack_splits(datas, raw_layout)
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


# ----------------------------------------------------------------------------- resolve


def round_half_up(x: float) -> int:
    """Nearest integer, halves rounded up (2.5 -> 3), unlike Python's round (2.5 -> 2)."""
    return int(np.floor(x + 0.5))


def default_mod_outs(dims: Sequence[int], fractions: Sequence[float],
                     max_latent: Optional[int] = None) -> tuple:
    """Cohort dims from the modality widths: per modality (0, round(f * D_m)..., D_m).

    Args:
      dims: K widths D_m.
      fractions: latent fractions f in (0, 1); round(f * D_m) rounds halves up. Latents that
        round to 0 or to D_m (they would be drop or full) are left out, duplicates kept once.
      max_latent: cap on the latent dims (PCA: the N_fit train+val rows it is fitted on).

    Returns:
      K ascending tuples, e.g. dims (76, 6), fractions (0.25, 0.5) -> ((0, 19, 38, 76), (0, 2, 3, 6)).
    """
    out = []
    for d in dims:
        lat = {min(round_half_up(f * d), max_latent or d) for f in fractions}
        out.append(tuple(sorted({0, int(d)} | {x for x in lat if 0 < x < d})))
    return tuple(out)


def _load(config, data, seeds):
    if data is None:
        if config.data.source == "":
            config_error("data.source", f"one of {sorted(DATA_SOURCES)} when no data is passed", "",
                         "The variant expects your data: pass data= (a MultiModalData, e.g. "
                         "MultiModalData.from_arrays(xs, y, task=...), or a function seed -> "
                         "MultiModalData), or set config.data.source.")
        return [validate_data(DATA_SOURCES[config.data.source](config, s),
                              f"data.source {config.data.source!r} seed {s}") for s in seeds]
    if isinstance(data, MultiModalData):
        checked = validate_data(data, f"data ({data.name})")
        return [checked for _ in seeds]
    if callable(data):
        return [validate_data(data(s), f"data(seed={s})") for s in seeds]
    raise ValueError(f"data must be None (config.data.source), a MultiModalData or a function "
                     f"seed -> MultiModalData, got {type(data).__name__}.")


def _check_seeds_agree(datas, seeds):
    first = datas[0]
    for s, d in zip(seeds[1:], datas[1:]):
        for what, a, b in (("modality widths", first.dims, d.dims), ("task", first.task, d.task),
                           ("n_classes", first.n_classes, d.n_classes),
                           ("split sizes (train, val, test)", first.sizes, d.sizes)):
            if a != b:
                raise ValueError(
                    f"data of seed {s} has {what} {b}, but seed {seeds[0]} has {a}; all seeds "
                    "train as one stacked program, so every seed's data needs the same widths, "
                    "task, classes and split sizes (vary only the rows and the split).")


def _resolve_task(config, data):
    if config.task == "":
        config.task = data.task
    elif config.task != data.task:
        config_error("task", f"{data.task!r} (the data's task)", config.task,
                     f"Set config.task = {data.task!r}, or '' to take it from the data.")
    if config.num_classes == 0:
        config.num_classes = int(data.n_classes)
    elif config.num_classes != data.n_classes:
        config_error("num_classes", f"{data.n_classes} (the data's n_classes)", config.num_classes,
                     f"Set config.num_classes = {data.n_classes}, or 0 to take it from the data.")


def _resolve_mod_outs(config, data):
    dims, k = data.dims, len(data.dims)
    n_fit = data.sizes[0] + data.sizes[1]
    pca = config.cohort.extractor == "pca"
    if not config.cohort.mod_outs:
        config.cohort.mod_outs = default_mod_outs(dims, config.cohort.latent_fractions,
                                                  n_fit if pca else None)
        logging.info("cohort.mod_outs from the data widths %s: %s", dims, config.cohort.mod_outs)
    outs = config.cohort.mod_outs
    if len(outs) != k:
        config_error("cohort.mod_outs", f"{k} tuples of dims (the data have {k} modalities of "
                     f"widths {dims})", outs, "Give one tuple per modality, or () to derive "
                     "them from the data (cohort.latent_fractions).")
    for m, (dims_m, d_m) in enumerate(zip(_mod_outs(config, dims), dims)):
        bad = [d for d in dims_m if not 0 <= int(d) <= d_m]
        if bad:
            config_error(f"cohort.mod_outs[{m}]", f"dims in [0, {d_m}] (0 drops modality {m}, "
                         f"{d_m} = its width passes it raw, in between = a latent dim)",
                         tuple(dims_m), f"Remove {bad}.")
        big = [d for d in dims_m if pca and n_fit < d < d_m]
        if big:
            config_error(f"cohort.mod_outs[{m}]", f"PCA latent dims <= min(N_fit, D) = "
                         f"{min(n_fit, d_m)} (PCA is fitted on the {n_fit} train+val rows)",
                         tuple(dims_m), f"Lower or remove {big}, or use more rows.")
    if not config.cohort.mod_hiddens:
        config.cohort.mod_hiddens = ((),) * k
    elif len(config.cohort.mod_hiddens) != k:
        config_error("cohort.mod_hiddens", f"{k} tuples of hidden widths (one per modality of the "
                     "data)", config.cohort.mod_hiddens, "Or () for no hidden layers.")


def _resolve_coop(config, data):
    k = len(data.dims)
    why = ("the data have {} modalities".format(k) if k != 2 else
           "the task is classification" if config.task != "regression" else "")
    if config.baselines.coop and why:
        if not config.baselines.coop_auto:
            config_error("baselines.coop", "False unless the data are 2-modality regression", True,
                         f"Cooperative learning does not apply here: {why}; set "
                         "config.baselines.coop = False (or coop_auto = True).")
        logging.warning("baselines.coop turned off: %s (Coop is 2-modality regression).", why)
        config.baselines.coop = False


def _check_cohort(config, data):
    """The cohort of the filled config builds, and optimal_k is at most its M members."""
    try:
        spec = cohort_lib.make_cohort_spec(_mod_outs(config, data.dims), data.dims)
    except ValueError as e:
        raise ValueError(f"config.cohort.mod_outs {tuple(config.cohort.mod_outs)} (add_full "
                         f"{config.cohort.add_full}): {e}") from e
    m = spec.num_members
    if config.divergence_weights != "uniform" and config.optimal_k > m:
        config_error("optimal_k", f"0 (choose k by silhouette) or a cluster count in [1, {m}] "
                     f"(the cohort has M = {m} members)", config.optimal_k,
                     f"Set config.optimal_k = 0 or a value <= {m}.")


def resolve(config, data: Union[None, MultiModalData, Callable[[int], MultiModalData]],
            seeds: Sequence[int]):
    """The run's effective config and per-seed data (the trainer's one entry to its inputs).

    Args:
      config: a `metafusion_jax.configs.metafusion` ConfigDict (not modified).
      data: None (the built-in `config.data.source`), one `MultiModalData` used by every seed,
        or a function seed -> `MultiModalData` (each seed its own split or draw).
      seeds: the S seeds of the run.

    Returns:
      (config, datas): a copy of `config` with the fields that come from the data filled in
      (task, num_classes, cohort.mod_outs, cohort.mod_hiddens; baselines.coop off where it does
      not apply and coop_auto is set), and a list of S validated `MultiModalData`.

    Raises:
      ValueError: bad data, data that differ across seeds, or a config value that contradicts
        the data (naming the config field, the data's value and the fix), before anything trains.
    """
    _validate_values(config)    # the rest of validate_config once the data filled the config
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed, got [].")
    datas = _load(config, data, seeds)
    _check_seeds_agree(datas, seeds)
    config = config.copy_and_resolve_references()
    _resolve_task(config, datas[0])
    _resolve_mod_outs(config, datas[0])
    _resolve_coop(config, datas[0])
    validate_config(config)
    _check_cohort(config, datas[0])
    return config, datas
