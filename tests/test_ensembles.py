"""Tests for the post-hoc ensembles: hand-made greedy cases, brute-force reference, voting, stacking."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metafusion_jax.metafusion import ensembles as E
from metafusion_jax.metafusion.mutual import task_loss


def _col(values):
    """Member predictions [M, 1, 1] for one sample."""
    return np.asarray(values, np.float32)[:, None, None]


def test_greedy_hand_case_keep_fraction_and_size_limit():
    # M=5 -> keep floor(4)=4 (member 4, a perfect predictor, is dropped by its val loss),
    # start {0,1,2} with weights [1,1,.5]/2.5 -> 0.4-0.4+0.4 = 0.4, loss 0.16;
    # adding 3 gives (1-1)/3 + (2-2)/6 = 0, loss 0; the size limit min(30, 4) stops.
    sel = E.greedy_selection(_col([1, -1, 2, -2, 0]), np.zeros(1, np.float32),
                             np.array([1, 1, 2, 2, 4.0]), task="regression")
    assert sel.indices.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(sel.weights, [1 / 3, 1 / 3, 1 / 6, 1 / 6])
    assert sel.val_loss == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(E.greedy_predict(_col([1, -1, 2, -2, 0]) + 1.0, sel), [[1.0]], rtol=1e-6)


def test_greedy_hand_case_stops_without_improvement_and_breaks_ties_by_rank():
    # Equal weights: start {0,1,2} mean 1 (loss 1); candidates 3 (-3) and 7 (-3) both give
    # mean 0; the better-ranked 3 wins; then nothing goes below 0, so it stops at size 4 < 8.
    preds = _col([3, 0, 0, -3, -1, 1, 2, -3, 0, 0])
    losses = np.array([1, 1, 1, 1, 1, 1, 1, 1, 5, 5.0])
    sel = E.greedy_selection(preds, np.zeros(1, np.float32), losses, task="regression")
    assert sel.indices.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(sel.weights, [0.25] * 4)


def _brute_greedy(preds, y, losses, task):
    """Slow reference: explicit Python loops over candidates and samples."""
    m = len(losses)
    ranked = sorted(range(m), key=lambda i: (losses[i], i))
    kept = ranked[:max(1, int(0.8 * m))]

    def loss_of(idx):
        tot = sum(1.0 / losses[i] for i in idx)
        err = 0.0
        for n in range(preds.shape[1]):
            avg = [sum(preds[i, n, c] / losses[i] / tot for i in idx) for c in range(preds.shape[2])]
            if task == "regression":
                err += (avg[0] - y[n]) ** 2
            else:
                lse = np.log(sum(np.exp(a) for a in avg))
                err += lse - avg[int(y[n])]
        return err / preds.shape[1]

    chosen = kept[:3]
    cur = loss_of(chosen)
    while len(chosen) < min(30, len(kept)):
        best, best_loss = None, cur
        for c in kept:
            if c not in chosen:
                val = loss_of(chosen + [c])
                if val < best_loss:
                    best, best_loss = c, val
        if best is None:
            break
        chosen.append(best)
        cur = best_loss
    return chosen


@pytest.mark.parametrize("seed", range(6))
def test_greedy_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    task = "regression" if seed % 2 == 0 else "classification"
    m, n = int(rng.integers(4, 12)), 15
    c = 1 if task == "regression" else 3
    preds = rng.normal(size=(m, n, c))
    y = rng.normal(size=n) if task == "regression" else rng.integers(0, c, n)
    losses = rng.uniform(0.5, 3.0, m)
    sel = E.greedy_selection(preds, y, losses, task=task)
    assert sel.indices.tolist() == _brute_greedy(preds, y, losses, task)
    np.testing.assert_allclose(sel.weights.sum(), 1.0)


def test_averages_against_numpy():
    rng = np.random.default_rng(1)
    preds = rng.normal(size=(4, 6, 2)).astype(np.float32)
    losses = np.array([2.0, 1.0, 4.0, 0.5], np.float32)
    np.testing.assert_allclose(E.simple_average(preds), preds.mean(0), rtol=1e-6)
    w = (1 / losses) / (1 / losses).sum()
    np.testing.assert_allclose(E.inverse_loss_weights(losses), w, rtol=1e-6)
    np.testing.assert_allclose(E.weighted_average(preds, w), np.tensordot(w, preds, 1), rtol=1e-5)
    np.testing.assert_array_equal(E.best_single(preds, losses), preds[3])
    sub = E.inverse_loss_weights(losses, subset=[0, 2])
    np.testing.assert_allclose(sub, [2 / 3, 0, 1 / 3, 0], rtol=1e-6)
    assert float(task_loss(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0]), None, "regression")) == 2.5
    ce = task_loss(jnp.array([[0.0, np.log(3.0)]]), jnp.array([1]), None, "classification")
    assert float(ce) == pytest.approx(-np.log(0.75), rel=1e-6)


def test_voting_and_ties():
    # Argmax per member: [2, 1, 1, 2] -> tie between classes 1 and 2 -> smallest class (1).
    preds = np.zeros((4, 2, 3), np.float32)
    for i, cls in enumerate([2, 1, 1, 2]):
        preds[i, 0, cls] = 1.0
    for i, cls in enumerate([0, 0, 2, 2]):
        preds[i, 1, cls] = 1.0
    assert E.majority_voting(preds).tolist() == [1, 0]
    # Weighted: class 2 gets 0.4+0.3, class 1 gets 0.1+0.2; sample 1: class 0 .5 vs class 2 .5 -> 0.
    assert E.weighted_voting(preds, np.array([0.4, 0.1, 0.2, 0.3])).tolist() == [2, 0]
    # Sample 0: class 2 .1+.5 vs class 1 .4; sample 1: class 0 .2 vs class 2 .8.
    assert E.weighted_voting(preds, np.array([0.1, 0.1, 0.3, 0.5])).tolist() == [2, 2]


def test_stacking_inputs_and_one_epoch_against_manual_adam():
    preds = np.arange(12, dtype=np.float32).reshape(2, 3, 2)      # M=2, N=3, C=2
    np.testing.assert_array_equal(E._stack_inputs(jnp.asarray(preds)),
                                  [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]])
    # n_train = 5, batch 4: one full batch and one with a single valid row (masked padding).
    rng = np.random.default_rng(0)
    tp = rng.normal(size=(3, 5, 1)).astype(np.float32)
    y = rng.normal(size=5).astype(np.float32)
    key = jax.random.key(3)
    params = E.stacking_init(jax.random.key(1), 3, 1)
    fit = E.make_stacking_fit(task="regression", n_train=5, epochs=1, batch_size=4)
    res = jax.jit(fit)(params, tp, y, tp, y, key)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), 5))
    tx = optax.adam(0.1)
    p, o = params, tx.init(params)
    for rows in (perm[:4], perm[4:]):
        loss = lambda q: jnp.mean((E.stacking_predict(q, tp[:, rows]) - y[rows, None]) ** 2)
        upd, o = tx.update(jax.grad(loss)(p), o, p)
        p = optax.apply_updates(p, upd)
    for a, b in zip(jax.tree.leaves(res.best_params), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_stacking_learns_and_keeps_best_epoch():
    rng = np.random.default_rng(2)
    y = rng.normal(size=256).astype(np.float32)
    preds = np.stack([y + rng.normal(size=256) * s for s in (0.1, 1.0, 2.0)])[..., None].astype(np.float32)
    res = E.fit_stacking(jax.random.key(0), preds[:, :192], y[:192], preds[:, 192:], y[192:],
                         task="regression", epochs=8)
    assert float(res.best_val) == pytest.approx(float(jnp.min(res.val_curve)))
    val_loss = task_loss(E.stacking_predict(res.best_params, preds[:, 192:]), y[192:], None,
                         "regression")
    assert float(val_loss) == pytest.approx(float(res.best_val), rel=1e-5)
    simple = task_loss(E.simple_average(preds[:, 192:]), y[192:], None, "regression")
    assert float(res.best_val) < float(simple)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[M, N, C\]"):
        E.greedy_selection(np.zeros((3, 4)), np.zeros(4), np.ones(3), task="regression")
    with pytest.raises(ValueError, match="val_losses must be"):
        E.greedy_selection(np.zeros((3, 4, 1)), np.zeros(4), np.ones(2), task="regression")
    with pytest.raises(ValueError, match="task must be"):
        E.greedy_selection(np.zeros((3, 4, 1)), np.zeros(4), np.ones(3), task="ranking")
    with pytest.raises(ValueError, match="task must be"):
        E.make_stacking_fit(task="ranking", n_train=4, epochs=1)
    with pytest.raises(ValueError, match="task must be"):
        E.fit_stacking(jax.random.key(0), np.zeros((2, 4, 1)), np.zeros(4), np.zeros((2, 4, 1)),
                       np.zeros(4), task="ranking", epochs=1)


def test_stacking_init_is_the_cohort_pytorch_init():
    # One PyTorch Linear init in the package: U(-1, 1) * 1/sqrt(fan_in) (cohort.torch_linear_init).
    from metafusion_jax.metafusion.cohort import torch_linear_init
    k1, k2 = jax.random.split(jax.random.key(5))
    params = E.stacking_init(jax.random.key(5), 4, 3)
    want = [torch_linear_init(k1, 12, (12, 12), (12,)), torch_linear_init(k2, 12, (12, 3), (3,))]
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
    assert float(jnp.max(jnp.abs(params[0]["w"]))) <= 1 / np.sqrt(12)
