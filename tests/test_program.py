"""The jitted rho-run program vs a Python epoch/batch loop; vmap over rho and seeds; schedule
with and without the B1 warm start; rho* choice."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metafusion import cohort, extractors, mutual, program, weights

N, NV, B, E = 10, 6, 4, 3       # 10 rows / batch 4: the last batch has 2 rows (masked padding)

pytestmark = pytest.mark.usefixtures("fast_compile")   # compile time dominates these tests


def _setup(seed=0):
    spec = cohort.make_cohort_spec([[0, 3, 5], [0, 4]], [5, 4])
    model = cohort.make_cohort(spec, extractors.make_pca_extractor(spec), hidden=(6,), out_dim=1)
    rng = np.random.default_rng(seed)
    raw = [rng.normal(size=(N + NV, p)).astype(np.float32) for p in (5, 4)]
    y = (raw[0][:, 0] * 2 - raw[1][:, 1]).astype(np.float32)
    xs = extractors.pca_inputs(raw, np.arange(N + NV), spec)
    data = {"x_train": tuple(jnp.asarray(x[:N]) for x in xs), "y_train": jnp.asarray(y[:N]),
            "x_val": tuple(jnp.asarray(x[N:]) for x in xs), "y_val": jnp.asarray(y[N:])}
    step = mutual.make_cohort_step(model.apply, task="regression", learning_rate=0.05)
    return spec, model, step, data


def _loop_run(step, params, opt, data, rho, w, key):
    """Reference: Python loops, a genuinely smaller last batch, host-side best tracking."""
    jstep, jval = jax.jit(step.step), jax.jit(step.val_task)
    M = w.shape[0]
    best_val, best_p, curve = np.full(M, np.inf), cohort.unstack(params), []
    for e in range(E):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, e), N))
        for s in range(0, N, B):
            idx = perm[s:s + B]
            xb = tuple(x[idx] for x in data["x_train"])
            params, opt, _ = jstep(params, opt, xb, data["y_train"][idx], jnp.ones(len(idx)),
                                   rho, w)
        val = np.asarray(jval(params, data["x_val"], data["y_val"]))
        curve.append(val)
        members = cohort.unstack(params)
        for c in range(M):
            if val[c] < best_val[c]:
                best_val[c], best_p[c] = val[c], members[c]
    return cohort.stack(best_p), best_val, np.stack(curve)


def test_program_equals_python_loop():
    spec, model, step, data = _setup()
    params = model.init(jax.random.key(0))
    opt = step.init_opt(params)
    prog = program.make_program(step, n_train=N, batch_size=B, epochs=E)
    rho, w, key = jnp.float32(0.7), jnp.asarray(np.linspace(0.2, 1, spec.num_members),
                                               jnp.float32), jax.random.key(5)
    res = jax.jit(prog.run)(params, opt, data, rho, w, key)
    ref_p, ref_val, ref_curve = _loop_run(step, params, opt, data, rho, w, key)
    np.testing.assert_allclose(res.val_curve, ref_curve, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.best_val, ref_val, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.best_val, np.min(ref_curve, axis=0), rtol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 res.best_params, ref_p)
    assert res.train_task.shape == (E, spec.num_members)
    # Best Adam state = the state at each member's best epoch (count = steps so far).
    best_epoch = np.argmin(np.asarray(res.val_curve), axis=0)
    counts = [leaf for leaf in jax.tree.leaves(res.best_opt_state) if leaf.ndim == 1
              and leaf.dtype == jnp.int32]
    np.testing.assert_array_equal(counts[0], (best_epoch + 1) * 3)


def _rep(tree, n):
    """Every leaf repeated n times on a new leading axis."""
    return jax.tree.map(lambda a: jnp.repeat(a[None], n, axis=0), tree)


def _program_and_init(init_seed):
    """(spec, data, program, params, opt) of the test cohort, params from key(init_seed)."""
    spec, model, step, data = _setup()
    prog = program.make_program(step, n_train=N, batch_size=B, epochs=E)
    params = model.init(jax.random.key(init_seed))
    return spec, data, prog, params, step.init_opt(params)


def test_vmap_over_rho_and_seeds_equals_single_runs():
    spec, data, prog, params, opt = _program_and_init(1)
    M = spec.num_members
    rhos = jnp.asarray([0.0, 0.99, 3.0])
    w = jnp.ones((3, M))
    keys = jax.random.split(jax.random.key(2), 3)
    rep = _rep
    res = jax.jit(prog.run_rhos)(rep(params, 3), rep(opt, 3), data, rhos, w, keys)
    run = jax.jit(prog.run)
    for r in range(3):
        single = run(params, opt, data, rhos[r], w[r], keys[r])
        np.testing.assert_allclose(res.best_val[r], single.best_val, rtol=1e-5, atol=1e-6)
    assert not np.allclose(res.best_val[0], res.best_val[2])
    # Seeds: a second data set on the S axis.
    _, _, _, data2 = _setup(seed=1)
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), data, data2)
    res_s = jax.jit(prog.run_seeds)(rep(rep(params, 3), 2), rep(rep(opt, 3), 2), both, rhos,
                                    rep(w, 2), jnp.stack([keys, keys]))
    assert res_s.best_val.shape == (2, 3, M) and res_s.val_curve.shape == (2, 3, E, M)
    np.testing.assert_allclose(res_s.best_val[0], res.best_val, rtol=1e-5, atol=1e-6)
    single = run(params, opt, data2, rhos[1], w[1], keys[1])
    np.testing.assert_allclose(res_s.best_val[1, 1], single.best_val, rtol=1e-5, atol=1e-6)


def test_epoch_chunks_of_run_epochs_seeds_equal_run_seeds_bitwise():
    # The trainer runs a stage in checkpointed chunks of epochs: chunks [0, 1) + [1, E) must
    # give run_seeds' results (one vmapped whole run) bit for bit.
    spec, data, prog, params, opt = _program_and_init(5)
    M = spec.num_members
    rep = _rep
    _, _, _, data2 = _setup(seed=1)
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), data, data2)
    rhos, w = jnp.asarray([0.5, 3.0]), jnp.ones((2, 2, M))
    keys = jax.random.split(jax.random.key(6), 4).reshape(2, 2)
    p, o = rep(rep(params, 2), 2), rep(rep(opt, 2), 2)
    whole = jax.jit(prog.run_seeds)(p, o, both, rhos, w, keys)
    chunk = jax.jit(prog.run_epochs_seeds)
    state = chunk(jax.jit(prog.init_seeds)(p, o), both, rhos, w, keys, 0, 1)
    state = chunk(state, both, rhos, w, keys, 1, E)
    for got, want in ((state.best_val, whole.best_val), (state.val_curve, whole.val_curve),
                      (state.train_task, whole.train_task)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 state.best_params, whole.best_params)
    assert not np.array_equal(np.asarray(whole.best_val[0]), np.asarray(whole.best_val[1]))


@pytest.mark.parametrize("warm_start", [False, True])
def test_schedule_with_and_without_b1_warm_start(warm_start):
    spec, model, step, data = _setup()
    prog = program.make_program(step, n_train=N, batch_size=B, epochs=E)
    params = model.init(jax.random.key(3))
    seeds = lambda t: jax.tree.map(lambda a: a[None], t)
    keys = jax.random.split(jax.random.key(4), 1)

    def weight_fn(best0):
        cw = weights.clustering_weights(best0, seed=0)
        return cw.w, cw.cluster_idxs

    out = program.run_schedule(prog, step, seeds(params), seeds(data), [0, 0.99, 3.0],
                               keys=keys, weight_fn=weight_fn, warm_start=warm_start)
    assert out.result.best_val.shape == (1, 3, spec.num_members)
    run = jax.jit(prog.run)
    opt = step.init_opt(params)
    k = lambda r: jax.random.fold_in(keys[0], r)
    w = jnp.asarray(out.weights[0])
    res0 = run(params, opt, data, jnp.float32(0.0), jnp.ones(spec.num_members), k(0))
    np.testing.assert_allclose(out.result.best_val[0, 0], res0.best_val, rtol=1e-5)
    np.testing.assert_array_equal(out.weights[0], weight_fn(np.asarray(res0.best_val))[0])
    start_p, start_o = ((res0.best_params, res0.best_opt_state) if warm_start else (params, opt))
    res1 = run(start_p, start_o, data, jnp.float32(0.99), w, k(1))
    np.testing.assert_allclose(out.result.best_val[0, 1], res1.best_val, rtol=1e-5, atol=1e-6)
    res2 = run(params, opt, data, jnp.float32(3.0), w, k(2))   # later rho: always from scratch
    np.testing.assert_allclose(out.result.best_val[0, 2], res2.best_val, rtol=1e-5, atol=1e-6)
    idx = program.choose_rho(np.asarray(out.result.best_val[0]), out.clusters[0])
    assert out.rho_star_index[0] == idx and out.rho_star[0] == [0, 0.99, 3.0][idx]


def test_choose_rho_by_hand():
    best = np.array([[1.0, 5.0, 9.0], [2.0, 1.0, 0.5], [0.5, 6.0, 9.0]])
    assert program.choose_rho(best) == 1                 # means 5, 1.17, 5.17
    assert program.choose_rho(best, [0]) == 2            # cluster {0}: 1, 2, 0.5
    assert program.choose_rho(np.ones((3, 2))) == 0      # ties: the first


def test_bad_arguments():
    _, _, step, _ = _setup()
    with pytest.raises(ValueError, match="batch_size"):
        program.make_program(step, n_train=10, batch_size=0, epochs=1)
    prog = program.make_program(step, n_train=N, batch_size=B, epochs=1)
    with pytest.raises(ValueError, match="rhos"):
        program.run_schedule(prog, step, {}, {}, [0.99, 0], keys=None, weight_fn=None)


# ----------------------------------------------------------------- chunks, resume, schedule


def _stage_inputs(seed=6, r=2):
    spec, model, step, data = _setup()
    prog = program.make_program(step, n_train=N, batch_size=B, epochs=E)
    params0 = jax.tree.map(lambda a: a[None], model.init(jax.random.key(seed)))     # [S=1, M..]
    params, opt = program.stage_init(params0, jax.vmap(step.init_opt)(params0), r, warm=None)
    keys = jax.random.split(jax.random.key(seed + 1), r)[None]                      # [S, R]
    w = jnp.asarray(np.linspace(0.2, 1, spec.num_members), jnp.float32)[None, None].repeat(r, 1)
    return spec, step, prog, params0, params, opt, seeds_data(data), keys, w


def seeds_data(data):
    return jax.tree.map(lambda a: a[None], data)


def _equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_stage_chunks_and_resume_are_bitwise_identical():
    spec, step, prog, _, params, opt, data, keys, w = _stage_inputs()
    rhos = [0.5, 2.0]
    whole = program.run_stage(prog, params, opt, data, rhos, w, keys, keep_warm=True)
    # The whole stage equals the vmapped whole-run program.
    ref = jax.jit(prog.run_seeds)(params, opt, data, jnp.asarray(rhos), w, keys)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)  # other program
    close(whole.best_val, ref.best_val)
    close(whole.val_curve, ref.val_curve)
    jax.tree.map(close, whole.warm.params, ref.best_params)
    seen = []
    chunked = program.run_stage(prog, params, opt, data, rhos, w, keys, name="s", chunk_epochs=1,
                                on_chunk=seen.append, keep_warm=True)
    assert [(p.stage, p.epoch) for p in seen] == [("s", 1), ("s", 2)]
    _equal(chunked, whole)
    # Resume from the progress after epoch 1 (as restored from a checkpoint: host arrays).
    host = seen[0]._replace(state=jax.tree.map(np.asarray, seen[0].state))
    resumed = program.run_stage(prog, None, None, data, rhos, w, keys, name="s", chunk_epochs=2,
                                progress=host, keep_warm=True)
    _equal(resumed, whole)
    assert whole.rhos.tolist() == rhos and whole.train_task.shape == (1, 2, E, spec.num_members)
    with pytest.raises(ValueError, match="cannot resume"):
        program.run_stage(prog, None, None, data, rhos, w, keys, name="other", progress=host)
    with pytest.raises(ValueError, match="chunk_epochs"):
        program.run_stage(prog, params, opt, data, rhos, w, keys, chunk_epochs=0)


def test_non_finite_chunk_raises_before_the_hook():
    spec, model, _, data = _setup()
    step = mutual.make_cohort_step(model.apply, task="regression", learning_rate=1e30)
    prog = program.make_program(step, n_train=N, batch_size=B, epochs=E)
    params0 = jax.tree.map(lambda a: a[None], model.init(jax.random.key(0)))
    params, opt = program.stage_init(params0, jax.vmap(step.init_opt)(params0), 1, warm=None)
    hook = lambda p: pytest.fail("a non-finite chunk reached the checkpoint hook")
    with pytest.raises(FloatingPointError, match="non-finite"):
        program.run_stage(prog, params, opt, seeds_data(data), [0.0],
                          jnp.ones((1, 1, spec.num_members)), jax.random.split(
                              jax.random.key(0), 1)[None], chunk_epochs=1, on_chunk=hook)


def test_schedule_resumes_inside_a_stage_and_runs_the_other_b1_arm():
    spec, step, prog, params0, _, _, data, _, _ = _stage_inputs()
    keys = jax.random.split(jax.random.key(8), 1)
    uniform = lambda b: (weights.uniform_weights(len(b)), None)
    kw = dict(keys=keys, weight_fn=[uniform], warm_start=True, report_both_b1=True)
    rhos = [0, 0.99, 3.0]
    stages, chunks = [], []
    full = program.run_schedule(prog, step, params0, data, rhos, chunk_epochs=2,
                                on_chunk=chunks.append, on_stage=lambda n, r: stages.append(n),
                                **kw)
    assert stages == ["indep", "mutual", "b1_other"]
    assert [(c.stage, c.epoch) for c in chunks] == [("indep", 2), ("mutual", 2), ("b1_other", 2)]
    assert full.indep.warm is not None and full.mutual.warm is None
    # The other arm (warm_start=True here) starts the first positive rho from params0.
    opt0 = jax.vmap(step.init_opt)(params0)
    one = lambda t: jax.tree.map(lambda a: a[:, :1], t)
    p1, o1 = program.stage_init(params0, opt0, 1, warm=None)
    other = jax.jit(prog.run_seeds)(p1, o1, data, jnp.asarray([0.99]), jnp.asarray(
        full.weights)[:, None], jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)[:, None])
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)  # other program
    close(full.b1_other.best_val, other.best_val)
    # The main arm's first positive rho starts from the rho=0 best params and Adam state.
    warm = jax.jit(prog.run_seeds)(one(full.indep.warm.params), one(full.indep.warm.opt_state),
                                   data, jnp.asarray([0.99]), jnp.asarray(full.weights)[:, None],
                                   jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)[:, None])
    close(full.mutual.best_val[:, :1], warm.best_val)
    assert full.b1_result.best_val.shape == (1, 3, spec.num_members)
    np.testing.assert_array_equal(full.b1_result.best_val[:, 1], full.b1_other.best_val[:, 0])
    idx = program.choose_rho(full.b1_result.best_val[0])
    assert full.b1_rho_star_index.tolist() == [idx]
    # Killed inside "mutual" after its first chunk: indep is done, mutual resumes at epoch 2.
    resumed_stages = []
    resumed = program.run_schedule(prog, step, params0, data, rhos, chunk_epochs=2,
                                   done={"indep": full.indep}, progress=chunks[1]._replace(
                                       state=jax.tree.map(np.asarray, chunks[1].state)),
                                   on_stage=lambda n, r: resumed_stages.append(n), **kw)
    assert resumed_stages == ["mutual", "b1_other"]
    _equal(resumed, full)
    largest = program.run_schedule(prog, step, params0, data, rhos, largest_rho=True,
                                   done={"indep": full.indep, "mutual": full.mutual,
                                         "b1_other": full.b1_other}, **kw)
    assert largest.rho_star.tolist() == [3.0] and largest.b1_rho_star_index.tolist() == [2]
    with pytest.raises(ValueError, match="weight_fn"):
        program.run_schedule(prog, step, params0, data, rhos, keys=keys,
                             weight_fn=[uniform, uniform], done={"indep": full.indep})
