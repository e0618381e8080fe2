r"""Draws the figures of a finished run into <workdir>/figures/ (PNG) and prints their paths.

    python experiments/draw_figures.py --workdir=/tmp/mm_synthetic    # a MetaMMF run
    python experiments/draw_figures.py --workdir=/tmp/mf_smoke        # a Meta Fusion run

MetaMMF (train_metammf.py draws the same at the end of a run unless --config.figures=False):
training curves, and for the MetaMMF family the modality attribution (against the planted
driver on the synthetic data). Meta Fusion: divergence weights and best cluster, per-member test
error over the latent-dim grid, greedy-ensemble picks, per-member validation loss per rho.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging

from metafusion_jax.figures import cohort
from metafusion_jax.figures import metammf_run
from metafusion_jax.metammf import recommend

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of a finished run.")
flags.mark_flags_as_required(["workdir"])


def draw(workdir):
    """{figure name: path} of the run in workdir (MetaMMF or Meta Fusion, told by results.json)."""
    path = os.path.join(workdir, "results.json")
    if not os.path.isfile(path):
        raise ValueError(f"{workdir} holds no finished run (no results.json). Train it first.")
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    if "members" in results:  # Meta Fusion
        return cohort.draw_metafusion_figures(workdir)
    run = recommend.load_run(workdir)
    config = run.config
    synthetic = config.data.source == "synthetic" and {
        k: (tuple(tuple(p) for p in config.data[k]) if k == "modality_dims" else config.data[k])
        for k in metammf_run.SYNTHETIC_FIELDS}
    paths, summary = metammf_run.draw_metammf_run(
        workdir, config.model.name, run.params, run.inputs["features"], run.data,
        pca_dims=dict(tuple(p) for p in config.data.pca_dims), fusion_kind=config.model.fusion,
        synthetic=synthetic)
    if summary is not None:
        print("modality attribution:", json.dumps(summary))
    return {k: os.path.join(workdir, v) for k, v in paths.items()}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    for name, path in draw(_WORKDIR.value).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    app.run(main)
