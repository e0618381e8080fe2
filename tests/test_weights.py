"""Clustering weights on hand-made losses: k by silhouette, best / worst cluster, edge cases."""
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from metafusion_jax.metafusion import weights

# Three obvious groups: {0, 3, 5} ~ 1, {1, 4} ~ 5, {2, 6, 7} ~ 20.
LOSSES = np.array([1.0, 5.0, 20.0, 1.1, 5.2, 0.9, 19.5, 20.4])


def test_choose_k_three_groups_matches_silhouette_scan():
    assert weights.choose_k(LOSSES, seed=0) == 3
    scores = {k: silhouette_score(LOSSES[:, None], KMeans(k, random_state=0).fit_predict(
        LOSSES[:, None])) for k in range(2, 8)}
    assert max(scores, key=scores.get) == 3


def test_best_cluster_weights():
    cw = weights.clustering_weights(LOSSES, seed=0)
    assert cw.k == 3
    np.testing.assert_array_equal(cw.cluster_idxs, [0, 3, 5])
    expected = np.zeros(8, np.float32)
    expected[[0, 3, 5]] = 1 / 3
    np.testing.assert_array_equal(cw.w, expected)
    assert len(np.unique(cw.labels)) == 3 and cw.w.sum() == pytest.approx(1.0)


def test_adversarial_takes_worst_cluster():
    cw = weights.clustering_weights(LOSSES, seed=0, adversarial=True)
    np.testing.assert_array_equal(cw.cluster_idxs, [2, 6, 7])
    np.testing.assert_allclose(cw.w[[2, 6, 7]], 1 / 3)
    assert cw.w[[0, 1, 3, 4, 5]].sum() == 0


def test_optimal_k_override():
    cw = weights.clustering_weights(LOSSES, seed=0, optimal_k=2)
    # k = 2 merges {~1} and {~5}: mean loss 2.64 < 19.97.
    assert cw.k == 2
    np.testing.assert_array_equal(cw.cluster_idxs, [0, 1, 3, 4, 5])
    np.testing.assert_allclose(cw.w[[0, 1, 3, 4, 5]], 0.2)


def test_two_groups():
    cw = weights.clustering_weights([3.0, 3.1, 9.0, 9.2, 2.9, 9.1], seed=1)
    assert cw.k == 2
    np.testing.assert_array_equal(cw.cluster_idxs, [0, 1, 4])


def test_m3_only_k2():
    cw = weights.clustering_weights([1.0, 1.2, 8.0], seed=0)
    assert cw.k == 2
    np.testing.assert_array_equal(cw.cluster_idxs, [0, 1])
    np.testing.assert_allclose(cw.w, [0.5, 0.5, 0.0])


def test_m2_and_m1_single_cluster():
    # k in {2..2} - {2} is empty: one cluster of every member.
    cw = weights.clustering_weights([1.0, 4.0], seed=0)
    assert cw.k == 1
    np.testing.assert_allclose(cw.w, [0.5, 0.5])
    np.testing.assert_allclose(weights.clustering_weights([2.0], seed=0).w, [1.0])


def test_duplicate_losses_do_not_crash():
    cw = weights.clustering_weights([1.0, 1.0, 1.0, 7.0, 7.0], seed=0)
    np.testing.assert_array_equal(cw.cluster_idxs, [0, 1, 2])


def test_uniform_and_errors():
    np.testing.assert_array_equal(weights.uniform_weights(3), [1, 1, 1])
    with pytest.raises(ValueError, match="num_members"):
        weights.uniform_weights(0)
    with pytest.raises(ValueError, match="finite"):
        weights.clustering_weights([1.0, np.nan, 2.0], seed=0)
    with pytest.raises(ValueError, match="optimal_k"):
        weights.clustering_weights(LOSSES, seed=0, optimal_k=9)


def test_adversarial_weights_is_clustering_on_the_worst_cluster():
    losses = np.array([1.0, 1.1, 5.0, 5.2, 9.0, 9.1])
    a = weights.adversarial_weights(losses, seed=0)
    b = weights.clustering_weights(losses, seed=0, adversarial=True)
    np.testing.assert_array_equal(a.w, b.w)
    assert a.cluster_idxs.tolist() == [4, 5]
