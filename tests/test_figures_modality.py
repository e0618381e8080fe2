"""Tests of figures/modality.py: per-modality attribution through each item's own weights."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.data.rec import synthetic
from metafusion_jax.figures import modality
from metafusion_jax.metammf import layers
from reliability import bad_input

pytestmark = pytest.mark.usefixtures("fast_compile_module")

SLICES = (("visual", 0, 4), ("acoustic", 4, 6), ("textual", 6, 9))


@pytest.mark.parametrize("kind", ["dense", "cp", "cp_repo", "static"])
def test_block_contributions_equal_norms_through_the_item_weight(kind):
    fk = layers.FUSION_KINDS[kind]
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = fk.init(k1, 9, 5, 3, 2)
    x = jax.random.normal(k2, (6, 9))
    s = jax.random.normal(k3, (6, 3))
    got = modality.block_contributions(fk.apply_one, params, x, s, SLICES)
    assert got.shape == (6, 3)
    for i in range(6):
        w_i = np.asarray(fk.item_weight(params, s[i]))   # [9, 5] reference
        for k, (_, a, b) in enumerate(SLICES):
            want = np.linalg.norm(np.asarray(x[i, a:b]) @ w_i[a:b])
            assert got[i, k] == pytest.approx(want, rel=1e-4)
    shares = modality.modality_shares(fk.apply_one, params, x, s, SLICES)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-5)


def test_agreement_and_slices_by_hand():
    shares = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.4, 0.4, 0.2]])
    assert modality.agreement(shares, [0, 1, 0, 1]) == 0.5  # argmax of row 3 is 0 (tie -> 0)
    # relative: divide by the column means (0.325, 0.325, 0.35) -> argmax rows 0, 1, 2, 0
    assert modality.relative_agreement(shares, [0, 1, 2, 1]) == 0.75
    assert modality.slices_of((("a", 3), ("b", 2))) == (("a", 0, 3), ("b", 3, 5))
    assert modality.slices_of({"a": 1}) == (("a", 0, 1),)


def test_planted_driver_follows_the_model_order():
    dims = (("visual", 4), ("acoustic", 3), ("textual", 2))
    _, info = synthetic.make_synthetic_microvideo(30, 20, 120, modality_dims=dict(dims), seed=2)
    names = ["textual", "visual", "acoustic"]  # another order than the generator's
    driver = modality.planted_driver(names, n_users=30, n_items=20, n_interactions=120,
                                     modality_dims=dims, seed=2)
    assert [names[d] for d in driver] == [info["modalities"][d] for d in info["driver"]]


def test_metammf_figure_and_summary(tmp_path):
    fuser = layers.make_fusion("dense", (9, 5, 3), 2, 2)
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    params = {"fusion": fuser.init(k1), "meta": layers.meta_info_init(k2, 9, 6, 2)}
    x = jax.random.normal(k3, (30, 9))
    driver = np.arange(30) % 3
    path, summary = modality.draw_metammf_modality(str(tmp_path), params, x, SLICES, "dense",
                                                   driver=driver)
    assert os.path.getsize(path) > 15_000 and path.endswith("figures/modality.png")
    s = layers.meta_info(params["meta"], x)
    want = modality.modality_shares(layers.FUSION_KINDS["dense"].apply_one, params["fusion"][0],
                                    x, s, SLICES)
    assert summary["agreement"] == pytest.approx(modality.agreement(want, driver))
    assert summary["relative_agreement"] == pytest.approx(
        modality.relative_agreement(want, driver))
    assert summary["mean_share"]["visual"] == pytest.approx(float(want[:, 0].mean()), rel=1e-5)
    assert sum(summary["mean_share"].values()) == pytest.approx(1.0, rel=1e-5)


def test_bad_modality_inputs():
    fk = layers.FUSION_KINDS["static"]
    params = fk.init(jax.random.key(0), 9, 2, 1, 1)
    with bad_input("figures: modality slices that do not cover the features",
                   match="modality slices end at"):
        modality.block_contributions(fk.apply_one, params, jnp.ones((2, 10)), jnp.ones((2, 1)),
                                     SLICES)
    with bad_input("figures: a planted driver of the wrong length", match="driver must have"):
        modality.agreement(np.ones((3, 2)), [0, 1])
    with bad_input("figures: modality names not matching the share columns",
                   match="names has 2 entries"):
        modality.plot_modality(np.ones((3, 3)) / 3, ["a", "b"], "/tmp/unused.png")
