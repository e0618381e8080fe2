"""Tests of figures/metammf_run.py: what the MetaMMF trainer draws at the end of a run."""
import json
import os

import jax
import numpy as np
import pytest

from metafusion_jax.data.rec import synthetic
from metafusion_jax.figures import metammf_run
from metafusion_jax.metammf import models

pytestmark = pytest.mark.usefixtures("fast_compile_module")


def write_log(workdir):
    with open(os.path.join(workdir, "metrics.jsonl"), "w", encoding="utf-8") as f:
        for step in (1, 2):
            f.write(json.dumps({"step": step, "train/loss": 0.7, "val/recall@20": 0.1}) + "\n")


def test_metammf_params_get_curves_and_modality(tmp_path):
    write_log(tmp_path)
    dims = {"acoustic": 3, "visual": 5}
    data, _ = synthetic.make_synthetic_microvideo(30, 20, 120, modality_dims=dims, seed=0)
    feats = np.concatenate([data.features[m] for m in data.features], axis=1)
    model = models.make_metammf(n_users=30, n_items=20, feature_dim=8, fusion_dims=(4,),
                                id_dim=2, user_dim=6, backbone="mf")
    params = model.init(jax.random.key(0))
    paths, summary = metammf_run.draw_metammf_run(
        str(tmp_path), "metammf", params, feats, data, synthetic={
            "n_users": 30, "n_items": 20, "n_interactions": 120,
            "modality_dims": tuple(dims.items()), "seed": 0})
    assert paths == {"training_curves": "figures/training_curves.png",
                     "modality": "figures/modality.png"}
    assert all(os.path.getsize(tmp_path / p) > 8_000 for p in paths.values())
    assert sorted(summary["mean_share"]) == ["acoustic", "visual"]
    assert 0.0 <= summary["agreement"] <= 1.0


def test_a_model_without_fusion_gets_curves_only(tmp_path):
    write_log(tmp_path)
    data, _ = synthetic.make_synthetic_microvideo(30, 20, 120, seed=0)
    paths, summary = metammf_run.draw_metammf_run(str(tmp_path), "vbpr", {"E": np.ones(2)},
                                                  np.ones((20, 128)), data)
    assert list(paths) == ["training_curves"] and summary is None
