"""Cohort spec order/errors, PyTorch-style init, and padded/masked member == unpadded network."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metafusion_jax.metafusion import cohort, extractors, mutual

# p = [5, 6]; modality 0 has full (5) and latent (3); modality 1 latent only (4, 2).
MOD_OUTS, DIMS = [[0, 3, 5], [2, 0, 4]], [5, 6]


def test_reference_member_order_setting_1_1():
    spec = cohort.make_cohort_spec([[0, 200, 300, 400, 500], [0, 100, 200, 300, 400]], [500, 400])
    assert spec.num_members == 24
    assert spec.dims[:6] == ((500, 400), (500, 300), (500, 200), (500, 100), (500, 0), (400, 400))
    assert spec.dims[-1] == (0, 100)
    assert spec.modes[0] == ("full", "full") and spec.modes[5] == ("latent", "full")
    assert spec.modes[4] == ("full", "drop")
    assert spec.widths == (500, 400)


def test_widths_masks_and_fan_in():
    spec = cohort.make_cohort_spec(MOD_OUTS, DIMS)
    assert spec.mod_outs == ((5, 3, 0), (4, 2, 0))
    assert spec.num_members == 8 and spec.widths == (5, 4)
    np.testing.assert_array_equal(cohort.fan_in(spec), [9, 7, 5, 7, 5, 3, 4, 2])
    mask = cohort.input_mask(spec)
    np.testing.assert_array_equal(mask[1], [1, 1, 1, 1, 1, 1, 1, 0, 0])   # (5, 2)
    np.testing.assert_array_equal(mask[5], [1, 1, 1, 0, 0, 0, 0, 0, 0])   # (3, 0)
    np.testing.assert_array_equal(mask[7], [0, 0, 0, 0, 0, 1, 1, 0, 0])   # (0, 2)


@pytest.mark.parametrize("mod_outs,dims,match", [
    ([[0, 6]], [5], "outside"),
    ([[0, -1]], [5], "outside"),
    ([[0], [0]], [5, 4], "empty cohort"),
    ([[0, 3]], [5, 4], "modality lists"),
    ([[]], [5], "empty"),
    ([[3, 3]], [5], "duplicate"),
    ([[3]], [0], "positive"),
])
def test_spec_errors(mod_outs, dims, match):
    with pytest.raises(ValueError, match=match):
        cohort.make_cohort_spec(mod_outs, dims)


def _model():
    spec = cohort.make_cohort_spec(MOD_OUTS, DIMS)
    model = cohort.make_cohort(spec, extractors.make_pca_extractor(spec), hidden=(7, 5), out_dim=2)
    rng = np.random.default_rng(0)
    raw = [rng.normal(size=(11, p)).astype(np.float32) for p in DIMS]
    xs = tuple(jnp.asarray(x) for x in extractors.pca_inputs(raw, np.arange(11), spec))
    return spec, model, xs


def _small_forward(spec, member, c, xs):
    """The unpadded member: used input columns only, first-layer rows sliced accordingly."""
    cols = np.flatnonzero(cohort.input_mask(spec)[c])
    parts = []
    for m, (d, mode) in enumerate(zip(spec.dims[c], spec.modes[c])):
        if mode == "full":
            parts.append(xs[m][:, :d])
        elif mode == "latent":
            off = spec.modality_dims[m] if any(r[m] == "full" for r in spec.modes) else 0
            parts.append(xs[m][:, off:off + d])
    h = np.concatenate(parts, axis=1) @ np.asarray(member["head"][0]["w"])[cols]
    h = np.maximum(h + np.asarray(member["head"][0]["b"]), 0)
    for i, layer in enumerate(member["head"][1:]):
        h = h @ np.asarray(layer["w"]) + np.asarray(layer["b"])
        if i < len(member["head"]) - 2:
            h = np.maximum(h, 0)
    return h


def test_init_is_pytorch_default_for_true_fan_in():
    spec, model, _ = _model()
    params = model.init(jax.random.key(0))
    mask = cohort.input_mask(spec)
    w1, b1 = np.asarray(params["head"][0]["w"]), np.asarray(params["head"][0]["b"])
    for c in range(spec.num_members):
        bound = 1 / np.sqrt(cohort.fan_in(spec)[c])
        assert np.all(w1[c][mask[c] == 0] == 0)
        used = w1[c][mask[c] == 1]
        assert np.all(np.abs(used) <= bound) and np.abs(used).max() > 0.6 * bound
        assert np.all(np.abs(b1[c]) <= bound)
    w2 = np.asarray(params["head"][1]["w"])
    assert np.all(np.abs(w2) <= 1 / np.sqrt(7)) and np.abs(w2).max() > 0.6 / np.sqrt(7)
    assert not np.allclose(w1[0], w1[1])  # members get different keys


def test_padded_member_equals_unpadded_network_before_and_after_adam():
    spec, model, xs = _model()
    params = model.init(jax.random.key(1))
    step = mutual.make_cohort_step(model.apply, task="regression", learning_rate=1e-2)
    y = jnp.asarray(np.random.default_rng(1).normal(size=11).astype(np.float32))
    opt = step.init_opt(params)
    jstep = jax.jit(step.step)
    mask = cohort.input_mask(spec)
    for it in range(4):
        out = np.asarray(model.apply(params, xs))
        for c, member in enumerate(cohort.unstack(params)):
            np.testing.assert_allclose(out[c], _small_forward(spec, member, c, xs),
                                       rtol=1e-5, atol=1e-5)
            assert np.all(np.asarray(member["head"][0]["w"])[mask[c] == 0] == 0)
        params, opt, _ = jstep(params, opt, xs, y, jnp.ones(11), jnp.float32(0.5),
                               jnp.ones(spec.num_members))
    assert np.asarray(params["head"][0]["w"]).any()


def test_stack_unstack_roundtrip():
    _, model, _ = _model()
    params = model.init(jax.random.key(2))
    members = cohort.unstack(params)
    assert len(members) == 8 and members[3]["head"][0]["w"].shape == (9, 7)
    back = cohort.stack(members)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_bad_head_sizes():
    spec = cohort.make_cohort_spec(MOD_OUTS, DIMS)
    with pytest.raises(ValueError, match="out_dim"):
        cohort.make_cohort(spec, extractors.make_pca_extractor(spec), hidden=(3,), out_dim=0)


def test_feature_major_mlp_apply_equals_the_plain_layers_values_and_grads():
    # mlp_apply keeps activations [H, B] internally (speed); it must be x @ w + b layer by layer.
    from jax.test_util import check_grads
    rng = np.random.default_rng(3)
    sizes = (7, 5, 4, 2)
    layers = [{"w": jnp.asarray(rng.normal(size=(a, b)), jnp.float32),
               "b": jnp.asarray(rng.normal(size=(b,)), jnp.float32)}
              for a, b in zip(sizes[:-1], sizes[1:])]
    x = jnp.asarray(rng.normal(size=(6, 7)), jnp.float32)

    def plain(layers, x, final_relu):
        h = np.asarray(x, np.float64)
        for i, layer in enumerate(layers):
            h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
            if i < len(layers) - 1 or final_relu:
                h = np.maximum(h, 0.0)
        return h
    for final_relu in (False, True):
        got = cohort.mlp_apply(layers, x, final_relu=final_relu)
        assert got.shape == (6, 2)
        np.testing.assert_allclose(got, plain(layers, x, final_relu), rtol=1e-5, atol=1e-5)
    check_grads(lambda l, x: cohort.mlp_apply(l, x), (layers, x), order=1, modes=("rev",),
                atol=2e-2, rtol=2e-2)
    vmapped = jax.vmap(lambda l: cohort.mlp_apply(l, x))(cohort.stack([layers, layers]))
    np.testing.assert_allclose(vmapped[1], plain(layers, x, False), rtol=1e-5, atol=1e-5)
