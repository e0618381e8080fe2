"""Extractors: exact PCA vs sklearn, the PCA input layout, separate encoders (shared init per
(m, d), padded == small network), encoder chains sliced by depth, freezing and bug B3."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA

from metafusion_jax.metafusion import cohort, extractors, mutual

RNG = np.random.default_rng(0)


def test_fit_pca_matches_sklearn_both_shapes():
    for shape in [(30, 12), (10, 25)]:
        x = RNG.normal(size=shape) @ np.diag(np.linspace(3, 0.5, shape[1]))
        mean, comps = extractors.fit_pca(x, 4)
        ref = PCA(4, svd_solver="full").fit(x)
        np.testing.assert_allclose(comps, ref.components_.T, atol=1e-8)
        np.testing.assert_allclose((x - mean) @ comps, ref.transform(x), atol=1e-8)
    with pytest.raises(ValueError, match="n_components"):
        extractors.fit_pca(np.ones((5, 3)), 4)


def test_pca_inputs_layout_fit_rows_and_errors():
    spec = cohort.make_cohort_spec([[0, 2, 6], [0, 3]], [6, 4])
    x0, x1 = RNG.normal(size=(20, 6)), RNG.normal(size=(20, 4))
    fit = np.arange(15)                       # train+val rows only
    out = extractors.pca_inputs([x0, x1], fit, spec)
    assert out[0].shape == (20, 6 + 2) and out[1].shape == (20, 3)
    np.testing.assert_allclose(out[0][:, :6], x0, rtol=1e-6)
    mean, comps = extractors.fit_pca(x0[fit], 2)
    np.testing.assert_allclose(out[0][:, 6:], (x0 - mean) @ comps, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"xs\[1\]"):
        extractors.pca_inputs([x0, x1[:, :3]], fit, spec)


def _small_separate(enc_layers, head, d, x):
    h = x
    for i, l in enumerate(enc_layers):
        w, b = np.asarray(l["w"]), np.asarray(l["b"])
        if i == len(enc_layers) - 1:
            w, b = w[:, :d], b[:d]
        h = h @ w + b
        if i < len(enc_layers) - 1:
            h = np.maximum(h, 0)
    return h


def test_separate_encoders_shared_init_and_equal_small_network():
    spec = cohort.make_cohort_spec([[0, 2, 4], [0, 3]], [7, 3])   # m0 latent 4/2, m1 full
    ext = extractors.make_separate_extractor(spec, mod_hiddens=[[5], []])
    model = cohort.make_cohort(spec, ext, hidden=(6,), out_dim=1)
    params = model.init(jax.random.key(0))
    enc0 = params["enc"][0]
    assert params["enc"][1] is None and enc0[1]["w"].shape == (spec.num_members, 5, 4)
    by_d = {}
    for c, dims in enumerate(spec.dims):
        if dims[0] in (2, 4):
            first = np.asarray(enc0[0]["w"][c])
            by_d.setdefault(dims[0], first)
            np.testing.assert_array_equal(first, by_d[dims[0]])   # same (m, d) -> same init
        else:
            assert not np.asarray(enc0[0]["w"][c]).any()
    assert not np.allclose(by_d[2], by_d[4])
    c2 = spec.dims.index((2, 3))
    assert not np.asarray(enc0[1]["w"][c2][:, 2:]).any()           # columns beyond d are zero
    # PyTorch bound of the encoder output layer: fan-in is the hidden width 5.
    assert np.abs(np.asarray(enc0[1]["w"])).max() <= 1 / np.sqrt(5)
    x0, x1 = RNG.normal(size=(9, 7)).astype(np.float32), RNG.normal(size=(9, 3)).astype(np.float32)
    xs = (jnp.asarray(x0), jnp.asarray(x1))
    step = mutual.make_cohort_step(model.apply, task="regression", learning_rate=1e-2)
    opt, y = step.init_opt(params), jnp.asarray(RNG.normal(size=9).astype(np.float32))
    apply, jstep = jax.jit(model.apply), jax.jit(step.step)
    for _ in range(3):
        out = np.asarray(apply(params, xs))
        for c, member in enumerate(cohort.unstack(params)):
            d0, d1 = spec.dims[c]
            parts = []
            if d0:
                parts.append(_small_separate(member["enc"][0], None, d0, x0))
            if d1:
                parts.append(x1)
            cols = np.flatnonzero(cohort.input_mask(spec)[c])
            h = np.maximum(np.concatenate(parts, 1) @ np.asarray(member["head"][0]["w"])[cols]
                           + np.asarray(member["head"][0]["b"]), 0)
            ref = h @ np.asarray(member["head"][1]["w"]) + np.asarray(member["head"][1]["b"])
            np.testing.assert_allclose(out[c], ref, rtol=1e-4, atol=1e-5)
        params, opt, _ = jstep(params, opt, xs, y, jnp.ones(9), jnp.float32(1.0),
                               jnp.ones(spec.num_members))
    assert not np.asarray(params["enc"][0][1]["w"][c2][:, 2:]).any()  # masked columns stay 0


def test_trainable_flags_and_b3():
    spec = cohort.make_cohort_spec([[0, 2], [0, 3]], [5, 6])        # (2,3), (2,0), (0,3)
    np.testing.assert_array_equal(
        extractors.trainable_flags(spec, freeze=False, reproduce_b3=False), np.ones((3, 2), bool))
    np.testing.assert_array_equal(
        extractors.trainable_flags(spec, freeze=True, reproduce_b3=False), np.zeros((3, 2), bool))
    np.testing.assert_array_equal(
        extractors.trainable_flags(spec, freeze=True, reproduce_b3=True),
        [[True, True], [False, False], [False, False]])


def test_encoder_chain_pretrain_slice_and_freeze(fast_compile):
    p, n = 10, 64
    x = RNG.normal(size=(n, p)).astype(np.float32)
    y = (x[:, 0] - 2 * x[:, 1]).astype(np.float32)
    chain = extractors.pretrain_chain(
        jax.random.key(0), jnp.asarray(x[:48]), jnp.asarray(y[:48]), jnp.asarray(x[48:]),
        jnp.asarray(y[48:]), hidden=[16], latent_dims=[3, 5], out_dim=1, task="regression",
        learning_rate=1e-2, epochs=30, batch_size=16)
    assert [l["w"].shape for l in chain] == [(10, 16), (16, 5), (5, 3), (3, 1)]
    fwd = lambda ls, h: [h := np.maximum(h @ np.asarray(l["w"]) + np.asarray(l["b"]), 0)
                         for l in ls][-1]
    full = x[48:]
    for l in chain[:-1]:
        full = np.maximum(full @ np.asarray(l["w"]) + np.asarray(l["b"]), 0)
    pred = full @ np.asarray(chain[-1]["w"]) + np.asarray(chain[-1]["b"])
    assert np.mean((pred[:, 0] - y[48:]) ** 2) < 0.5 * np.var(y[48:])   # it learned something

    spec = cohort.make_cohort_spec([[0, 3, 5]], [p])                     # members (5,), (3,)
    for freeze, b3, moves in [(False, False, [True, True]), (True, False, [False, False]),
                              (True, True, [True, True])]:  # distinct d: both first users
        ext = extractors.make_encoder_extractor(spec, [chain], mod_hiddens=[[16]], freeze=freeze,
                                                reproduce_b3=b3)
        model = cohort.make_cohort(spec, ext, hidden=(3,), out_dim=1)
        params = model.init(jax.random.key(1))
        xs = (jnp.asarray(x[:8]),)
        blocks = [np.asarray(ext.blocks(jax.tree.map(lambda a: a[c], params["enc"]), c, xs))
                  for c in range(2)]
        np.testing.assert_allclose(blocks[0], fwd(chain[:2], x[:8]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(blocks[1][:, :3], fwd(chain[:3], x[:8]), rtol=1e-5,
                                   atol=1e-5)
        step = mutual.make_cohort_step(model.apply, task="regression", learning_rate=1e-2)
        new, _, _ = step.step(params, step.init_opt(params), xs, jnp.asarray(y[:8]),
                              jnp.ones(8), jnp.float32(0.0), jnp.ones(2))
        moved = [bool(np.any(np.asarray(new["enc"][0][0]["w"][c] != params["enc"][0][0]["w"][c])))
                 for c in range(2)]
        assert moved == moves, (freeze, b3)


def test_identity_extractor_rejects_latent_dims():
    spec = cohort.make_cohort_spec([[0, 3], [0, 2]], [3, 4])
    with pytest.raises(ValueError, match="identity"):
        extractors.make_identity_extractor(spec)
    spec = cohort.make_cohort_spec([[0, 3], [0, 4]], [3, 4])
    model = cohort.make_cohort(spec, extractors.make_identity_extractor(spec), hidden=(2,),
                               out_dim=1)
    params = model.init(jax.random.key(0))
    xs = (jnp.ones((2, 3)), jnp.ones((2, 4)))
    assert model.apply(params, xs).shape == (3, 2, 1)


def test_pca_extractor_rejects_raw_arrays_where_scores_are_expected():
    # Modality 0: full (6) and latents (2) -> layout width 6 + 2 = 8; modality 1: latent 3 only.
    spec = cohort.make_cohort_spec([[0, 2, 6], [0, 3]], [6, 4])
    assert extractors.pca_layout_widths(spec) == ((6, 2), (0, 3))
    model = cohort.make_cohort(spec, extractors.make_pca_extractor(spec), hidden=(4,), out_dim=1)
    params = model.init(jax.random.key(0))
    raw = (jnp.zeros((5, 6)), jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"xs\[0\] has width 6, expected 8 = \[raw x_0 \(6 columns\) "
                       r"\| top-2 PCA scores\].*pca_inputs"):
        model.apply(params, raw)
    with pytest.raises(ValueError, match=r"xs\[1\] has width 4, expected 3"):
        jax.jit(model.apply)(params, (jnp.zeros((5, 8)), jnp.zeros((5, 4))))
    with pytest.raises(ValueError, match="got 1 modalities"):
        model.apply(params, (jnp.zeros((5, 8)),))
    good = extractors.pca_inputs([RNG.normal(size=(5, 6)), RNG.normal(size=(5, 4))], np.arange(5), spec)
    assert model.apply(params, tuple(map(jnp.asarray, good))).shape == (spec.num_members, 5, 1)
