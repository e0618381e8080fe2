"""Mutual learning: divergence matrix vs a double loop, joint loss by hand, stacked step == M
independent per-member steps, rho=0 == independent training, one compile for all rho / w."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metafusion_jax.metafusion import cohort, extractors, mutual

RNG = np.random.default_rng(0)


def _loop_divergence(F, mask, task):
    F = np.asarray(F, np.float64)
    m, b, _ = F.shape
    out = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            vals = []
            for r in range(b):
                if task == "regression":
                    vals.append(np.mean((F[i, r] - F[j, r]) ** 2))
                else:
                    pi = np.exp(F[i, r] - F[i, r].max()); pi /= pi.sum()
                    pj = np.exp(F[j, r] - F[j, r].max()); pj /= pj.sum()
                    vals.append(np.sum(pj * (np.log(pj) - np.log(pi))))
            out[i, j] = np.sum(np.array(vals) * mask) / mask.sum()
    return out


@pytest.mark.parametrize("task,c", [("regression", 1), ("regression", 3), ("classification", 4)])
def test_divergence_matrix_equals_double_loop(task, c):
    F = RNG.normal(size=(5, 6, c)).astype(np.float32)
    mask = np.array([1, 1, 1, 0, 1, 0], np.float32)
    got = mutual.divergence_matrix(jnp.asarray(F), jnp.asarray(mask), task)
    np.testing.assert_allclose(got, _loop_divergence(F, mask, task), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diag(got), 0, atol=1e-6)


def test_joint_loss_by_hand():
    F = jnp.asarray([[[1.0], [2.0]], [[0.0], [0.0]], [[3.0], [1.0]]])    # M=3, B=2, C=1
    y = jnp.asarray([1.0, 1.0])
    w = jnp.asarray([1.0, 0.0, 1.0])
    loss, aux = mutual.joint_loss(F, y, jnp.ones(2), jnp.float32(2.0), w, "regression")
    task = np.array([0.5, 1.0, 2.0])
    # D rows: D_01 = (1+4)/2, D_02 = (4+1)/2; D_10 = 2.5, D_12 = 5; D_20 = 2.5, D_21 = 5.
    div = np.array([2.5 / 2, (2.5 + 5) / 2, 2.5 / 2])    # sum_j w_j D_ij (j != i) / sum w
    np.testing.assert_allclose(aux["task"], task, rtol=1e-6)
    np.testing.assert_allclose(aux["divergence"], div, rtol=1e-6)
    np.testing.assert_allclose(loss, np.sum(task + 2.0 * div), rtol=1e-6)


def test_classification_task_loss_and_mask():
    f = jnp.asarray([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]])
    y = jnp.asarray([0, 0, 1])
    ce = -np.log(np.exp(2) / (np.exp(2) + 1)), -np.log(1 / (1 + np.e))
    got = mutual.task_loss(f, y, jnp.asarray([1.0, 1.0, 0.0]), "classification")
    np.testing.assert_allclose(got, np.mean(ce), rtol=1e-6)


def _setup(task="regression", out_dim=1):
    spec = cohort.make_cohort_spec([[0, 3, 5], [0, 4]], [5, 4])
    model = cohort.make_cohort(spec, extractors.make_pca_extractor(spec), hidden=(6,),
                               out_dim=out_dim)
    raw = [RNG.normal(size=(8, p)).astype(np.float32) for p in (5, 4)]
    xs = tuple(jnp.asarray(x) for x in extractors.pca_inputs(raw, np.arange(8), spec))
    y = (jnp.asarray(RNG.normal(size=8).astype(np.float32)) if task == "regression"
         else jnp.asarray(RNG.integers(0, out_dim, size=8)))
    return spec, model, xs, y


@pytest.mark.parametrize("task,out_dim", [("regression", 1), ("classification", 3)])
def test_stacked_step_equals_member_by_member_steps(task, out_dim):
    spec, model, xs, y = _setup(task, out_dim)
    M = spec.num_members
    params = model.init(jax.random.key(0))
    step = mutual.make_cohort_step(model.apply, task=task, learning_rate=1e-2)
    rho, w = jnp.float32(1.5), jnp.asarray(RNG.uniform(0.1, 1.0, size=M).astype(np.float32))
    mask = jnp.asarray([1, 1, 1, 1, 1, 1, 0, 0], jnp.float32)
    p_st, o_st = params, step.init_opt(params)
    members = cohort.unstack(params)
    tx = optax.adam(1e-2)
    opts = [tx.init(p) for p in members]
    wm = jnp.asarray(np.asarray(w)[None, :] * (1 - np.eye(M)) / np.sum(np.asarray(w)))

    @jax.jit
    def member_step(p, opt, i, outs):
        """Member i alone: its task loss + rho * sum_j Wmat_ij D(f_i, fixed f_j), its own Adam."""
        def loss_i(q):
            fi = model.member_apply(q, i, xs)
            if task == "regression":
                t = jnp.sum(mask * jnp.mean((fi - y[:, None]) ** 2, axis=1)) / mask.sum()
            else:
                lp = jax.nn.log_softmax(fi)
                t = -jnp.sum(mask * lp[jnp.arange(8), y]) / mask.sum()
            d = 0.0
            for j in range(M):
                if task == "regression":
                    dij = jnp.mean((fi - outs[j]) ** 2, axis=1)
                else:
                    pj = jax.nn.softmax(outs[j])
                    dij = jnp.sum(pj * (jnp.log(pj) - jax.nn.log_softmax(fi)), axis=1)
                d = d + wm[i, j] * jnp.sum(mask * dij) / mask.sum()
            return t + rho * d
        upd, opt = tx.update(jax.grad(loss_i)(p), opt, p)
        return optax.apply_updates(p, upd), opt

    for _ in range(3):
        p_st, o_st, _ = jax.jit(step.step)(p_st, o_st, xs, y, mask, rho, w)
        outs = jax.jit(model.apply)(cohort.stack(members), xs)
        new = []
        for i, p in enumerate(members):
            p, opts[i] = member_step(p, opts[i], i, outs)
            new.append(p)
        members = new
    for c, p in enumerate(members):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
                     cohort.unstack(p_st)[c], p)


def test_rho_zero_is_independent_training():
    spec, model, xs, y = _setup()
    params = model.init(jax.random.key(3))
    step = mutual.make_cohort_step(model.apply, task="regression")
    ones = jnp.ones(8)
    p_a, o_a, _ = step.step(params, step.init_opt(params), xs, y, ones, jnp.float32(0.0),
                            jnp.ones(spec.num_members))
    # Perturbing member 0 must not change any other member's update at rho = 0.
    moved = jax.tree.map(lambda a: a.at[0].add(0.3), params)
    p_b, _, _ = step.step(moved, step.init_opt(moved), xs, y, ones, jnp.float32(0.0),
                          jnp.ones(spec.num_members))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[1:], b[1:]), p_a, p_b)
    # ... and at rho > 0 it does (peers enter the loss): compare gradients of the joint loss.
    grad = jax.grad(lambda p: step.loss(p, xs, y, ones, jnp.float32(1.0),
                                        jnp.ones(spec.num_members))[0])
    g_c, g_d = grad(params), grad(moved)
    assert not np.allclose(g_c["head"][-1]["b"][1:], g_d["head"][-1]["b"][1:])


def test_one_compile_serves_all_rho_and_weights():
    spec, model, xs, y = _setup()
    traces = []

    def counted_apply(params, xs_):
        traces.append(1)
        return model.apply(params, xs_)

    step = mutual.make_cohort_step(counted_apply, task="regression")
    params = model.init(jax.random.key(4))
    opt = step.init_opt(params)
    jstep = jax.jit(step.step)
    losses = []
    for rho, w in [(0.0, np.ones(spec.num_members)), (0.99, RNG.uniform(size=spec.num_members)),
                   (3.0, np.eye(spec.num_members)[0])]:
        _, _, aux = jstep(params, opt, xs, y, jnp.ones(8), jnp.float32(rho),
                          jnp.asarray(w, jnp.float32))
        losses.append(float(aux["divergence"].sum()))
    assert len(traces) == 1
    assert len(set(losses)) == 3


def test_bad_task():
    with pytest.raises(ValueError, match="task"):
        mutual.make_cohort_step(lambda p, x: x, task="ranking")
    # Library functions given an unknown task raise (they used to fall through to CE).
    f, y, mask = jnp.zeros((3, 2)), jnp.zeros(3, jnp.int32), jnp.ones(3)
    for fn in (lambda: mutual.task_loss(f, y, mask, "ranking"),
               lambda: mutual.task_loss(f, y, None, "Regression"),
               lambda: mutual.divergence_matrix(f[None], mask, "ranking"),
               lambda: mutual.joint_loss(f[None], y, mask, 0.0, jnp.ones(1), "ranking")):
        with pytest.raises(ValueError, match="task must be one of"):
            fn()


def test_task_loss_without_mask_is_the_plain_mean():
    rng = np.random.default_rng(4)
    f = jnp.asarray(rng.normal(size=(7, 3)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 3, 7))
    ones = jnp.ones(7)
    for task, yy in (("classification", y), ("regression", f[:, 0] * 2)):
        a = mutual.task_loss(f, yy, None, task)
        np.testing.assert_allclose(a, mutual.task_loss(f, yy, ones, task), rtol=1e-6)
    logp = np.asarray(jax.nn.log_softmax(f))
    np.testing.assert_allclose(mutual.task_loss(f, y, None, "classification"),
                               -logp[np.arange(7), np.asarray(y)].mean(), rtol=1e-6)
