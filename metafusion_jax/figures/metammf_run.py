"""The figures the MetaMMF trainer draws into `<workdir>/figures/` at the end of a run.

`draw_metammf_run` is what `metammf.train` calls when `config.figures` is on: the training
curves for every model, and for the MetaMMF family (params with a "fusion" chain) the modality
attribution, against the planted driver on the synthetic data.
"""
import os

import numpy as np

from metafusion_jax.figures import curves
from metafusion_jax.figures import modality

# config.data fields that regenerate the synthetic data (and so its planted driver).
SYNTHETIC_FIELDS = ("n_users", "n_items", "n_interactions", "modality_dims", "seed")


def draw_metammf_run(workdir, model_name, params, features, data, *, pca_dims=None,
                     fusion_kind="dense", synthetic=None):
    """Draws a finished run's figures.

    Args:
        workdir: the run folder (its metrics.jsonl is read; figures go to figures/).
        model_name: config.model.name (titles).
        params: the best params.
        features: float [I, F], the features the model sees (inputs["features"]).
        data: the run's InteractionData (modality names and widths, dataset name).
        pca_dims: {modality: components} applied before concatenation (widths of the blocks).
        fusion_kind: config.model.fusion (static_mlp: "static").
        synthetic: for the synthetic loader, {field: value} of SYNTHETIC_FIELDS (regenerates
            the planted driver); else None / False.

    Returns:
        (paths, summary): {figure name: path relative to workdir}; summary of the modality
        attribution ({"mean_share", "agreement"}) or None for models without a fusion chain.
    """
    title = f"{model_name} on {data.name}"
    paths = {"training_curves": curves.draw_metammf_curves(workdir, title=title)}
    summary = None
    if isinstance(params, dict) and "fusion" in params:
        pca_dims = dict(pca_dims or {})
        widths = [(name, pca_dims.get(name, x.shape[1])) for name, x in data.features.items()]
        slices = modality.slices_of(widths)
        if int(np.asarray(features).shape[1]) == slices[-1][2]:
            driver = None
            if synthetic:
                driver = modality.planted_driver([n for n, _ in widths], **dict(synthetic))
            kind = "static" if "meta" not in params else fusion_kind
            paths["modality"], summary = modality.draw_metammf_modality(
                workdir, params, features, slices, kind, driver=driver)
    return {k: os.path.relpath(v, workdir) for k, v in paths.items()}, summary
