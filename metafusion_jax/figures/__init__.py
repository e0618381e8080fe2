"""Figures of a run, drawn with matplotlib's Agg renderer into PNG files (no pyplot, no display).

Each module has plain functions over explicit arrays (what a notebook calls) and small adapters
that read a run's workdir (metrics.jsonl, results.json), which the binaries call to fill
`<workdir>/figures/`:

  curves    MetaMMF training curves (train loss, val Recall@20 from metrics.jsonl).
  modality  MetaMMF modality attribution: each modality block's share of an item's first fusion
            layer output through the item's own weights W_i(s_i); agreement with a planted driver.
  cohort    Meta Fusion: divergence weights and best cluster, per-member test error over the
            latent-dim grid, greedy-ensemble picks, per-member validation loss per rho.
"""
from metafusion_jax.figures.curves import draw_metammf_curves
from metafusion_jax.figures.curves import plot_training_curves
from metafusion_jax.figures.curves import read_metrics

__all__ = ["draw_metammf_curves", "plot_training_curves", "read_metrics"]
