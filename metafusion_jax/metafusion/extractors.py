"""Per-modality extractors of a Meta Fusion cohort: identity, PCA, "separate", "encoder".

An `Extractor` turns a batch `xs` (tuple of K per-modality arrays) into one member's padded,
UNMASKED input of width W = sum_m W_m (cohort.py applies the 0/1 input mask):
block_m = full_{c,m} * pad(raw x_m) + latent_{c,m} * pad(z_{c,m}), z the extractor output.

* identity: only "full"/"drop" members (early/late fusion baselines); xs[m] = raw x_m [B, p_m].
* PCA (spec 1, 8): static, computed once on the host by `pca_inputs`, which lays xs[m] out as
  [raw x_m (only if some member uses m in full) | z_m (top D_m principal scores)].
  B10: the reference fits one sklearn PCA per d on train+val (randomized SVD for large p, so
  components are not exactly nested); we fit ONE exact SVD per modality on the given rows
  (train+val, as the reference) and keep the top-d columns. The extractor checks that layout
  (`check_pca_layout`): raw arrays where [raw | scores] is expected raise a ValueError instead
  of silently turning every latent block into zeros.
* separate: a trainable MLP p_m -> mod_hiddens[m] -> D_m per member (stacked, leaves [M, ...]);
  output columns beyond d_{c,m} start at zero and stay masked. Members sharing (m, d) start from
  the same init, as the reference's deep copies.
* encoder: one supervised chain per modality p_m -> hiddens -> latent dims (descending) -> out,
  pre-trained by `pretrain_chain`; member c uses the prefix up to the Linear+ReLU producing
  d_{c,m}. `freeze=True` stops gradients to the extractor; `reproduce_b3=True` freezes all but
  the first member (in cohort order) that uses each (m, d), as the reference does (bug B3).
"""
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metafusion_jax.data.pca import fit_pca  # noqa: F401  (re-exported for callers)

from metafusion_jax.metafusion import cohort as cohort_lib
from metafusion_jax.metafusion.cohort import CohortSpec, FULL, LATENT
from metafusion_jax.metafusion.mutual import check_task, task_loss


class Extractor(NamedTuple):
    """init(key) -> enc params (leaves [M, ...], {} for static extractors);
    blocks(enc_member, c, xs) -> [B, W] padded unmasked input of member c (c: int32 index)."""
    init: Callable
    blocks: Callable


def _latent_dims(spec: CohortSpec, m: int) -> list:
    return [d for d in spec.mod_outs[m] if 0 < d < spec.modality_dims[m]]


def _uses(spec: CohortSpec, m: int, mode: str) -> bool:
    return any(row[m] == mode for row in spec.modes)


def _assemble(spec: CohortSpec, c, raws: Sequence, latents: Sequence) -> jnp.ndarray:
    """Concatenates per-modality blocks full*pad(raw) + latent*pad(z) of widths W_m."""
    full = jnp.asarray(cohort_lib.mode_flags(spec, FULL))[c]
    lat = jnp.asarray(cohort_lib.mode_flags(spec, LATENT))[c]
    blocks = []
    for m, w_m in enumerate(spec.widths):
        if w_m == 0:
            continue
        block = 0.0
        if raws[m] is not None:
            block = block + full[m] * cohort_lib.pad_to(raws[m], w_m)
        if latents[m] is not None:
            block = block + lat[m] * cohort_lib.pad_to(latents[m], w_m)
        blocks.append(block)
    return jnp.concatenate(blocks, axis=-1)


def make_identity_extractor(spec: CohortSpec) -> Extractor:
    """Raw inputs only (every dim is 0 or p_m); xs[m] = x_m [B, p_m]."""
    if any(_latent_dims(spec, m) for m in range(spec.num_modalities)):
        raise ValueError(f"identity extractor allows only dims 0 or p_m per modality; mod_outs "
                         f"{spec.mod_outs} with widths {spec.modality_dims} have latent dims; "
                         "use a PCA, separate or encoder extractor.")
    raws = lambda xs: [xs[m] if _uses(spec, m, FULL) else None for m in range(spec.num_modalities)]
    return Extractor(lambda key: {},
                     lambda enc, c, xs: _assemble(spec, c, raws(xs), [None] * len(xs)))


# ---------------------------------------------------------------- PCA


def pca_inputs(xs: Sequence[np.ndarray], fit_rows: np.ndarray, spec: CohortSpec) -> tuple:
    """Per-modality inputs of the PCA extractor, computed once on the host.

    Args:
      xs: K arrays [N, p_m], all rows (train, val, test).
      fit_rows: int [N_fit] rows the PCA is fitted on (train+val, as the reference; B10).
      spec: the cohort.

    Returns:
      K float32 arrays [N, P'_m] = [x_m if some member uses m in full | top-D_m scores if some
      member uses a latent dim of m] (D_m = largest latent dim); empty [N, 0] if m is unused.
    """
    if len(xs) != spec.num_modalities:
        raise ValueError(f"pca_inputs got {len(xs)} modalities, the cohort has "
                         f"{spec.num_modalities}.")
    out = []
    for m, x in enumerate(xs):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != spec.modality_dims[m]:
            raise ValueError(f"xs[{m}] has shape {x.shape}, expected [N, "
                             f"{spec.modality_dims[m]}].")
        parts = [x] if _uses(spec, m, FULL) else []
        lat = _latent_dims(spec, m)
        if lat:
            mean, comps = fit_pca(x[fit_rows], max(lat))
            parts.append((x - mean) @ comps)
        out.append(np.concatenate(parts, axis=1).astype(np.float32) if parts
                   else np.zeros((x.shape[0], 0), np.float32))
    return tuple(out)


def pca_layout_widths(spec: CohortSpec) -> tuple:
    """K (raw width, score width) pairs of the `pca_inputs` layout [raw x_m | top-D_m scores]."""
    return tuple((spec.modality_dims[m] if _uses(spec, m, FULL) else 0,
                  max(_latent_dims(spec, m), default=0)) for m in range(spec.num_modalities))


def check_pca_layout(spec: CohortSpec, xs: Sequence) -> None:
    """Raises ValueError unless xs (K arrays [N, P'_m]) has the widths of `pca_inputs`."""
    layout = pca_layout_widths(spec)
    if len(xs) != len(layout):
        raise ValueError(f"the PCA extractor got {len(xs)} modalities, the cohort has "
                         f"{len(layout)}.")
    for m, (x, (raw_w, lat_w)) in enumerate(zip(xs, layout)):
        if x.shape[-1] != raw_w + lat_w:
            raise ValueError(
                f"PCA extractor: xs[{m}] has width {x.shape[-1]}, expected {raw_w + lat_w} = "
                f"[raw x_{m} ({raw_w} columns) | top-{lat_w} PCA scores]; raw arrays [N, p_m] "
                "are not its input: lay them out with extractors.pca_inputs(xs, fit_rows, spec).")


def make_pca_extractor(spec: CohortSpec) -> Extractor:
    """Static PCA extractor over the layout of `pca_inputs` (no trainable params).

    Its `blocks(enc, c, xs)` raises ValueError (at trace time) when xs[m] does not have the
    `pca_inputs` width raw_m + D_m (e.g. raw arrays [B, p_m] where scores are expected).
    """
    layout = pca_layout_widths(spec)

    def blocks(enc, c, xs):
        check_pca_layout(spec, xs)
        raws = [x[:, :raw_w] if raw_w else None for x, (raw_w, _) in zip(xs, layout)]
        lats = [x[:, raw_w:raw_w + lat_w] if lat_w else None
                for x, (raw_w, lat_w) in zip(xs, layout)]
        return _assemble(spec, c, raws, lats)
    return Extractor(lambda key: {}, blocks)


# ---------------------------------------------------------------- trainable encoders


def trainable_flags(spec: CohortSpec, *, freeze: bool, reproduce_b3: bool) -> np.ndarray:
    """bool [M, K]: whether member c trains its modality-m extractor copy.

    freeze=False: all True. freeze=True: all False, except with reproduce_b3 the first member in
    cohort order using each (m, d) (the reference's inconsistent freezing, bug B3).
    """
    flags = np.full((spec.num_members, spec.num_modalities), not freeze)
    if freeze and reproduce_b3:
        seen = set()
        for c, (dims_c, modes_c) in enumerate(zip(spec.dims, spec.modes)):
            for m, (d, mode) in enumerate(zip(dims_c, modes_c)):
                if mode == LATENT and (m, d) not in seen:
                    seen.add((m, d))
                    flags[c, m] = True
    return flags


def _maybe_frozen(enc_m, flag):
    return jax.tree.map(lambda a: jnp.where(flag, a, jax.lax.stop_gradient(a)), enc_m)


def make_separate_extractor(spec: CohortSpec, *, mod_hiddens: Sequence[Sequence[int]],
                            freeze: bool = False, reproduce_b3: bool = False) -> Extractor:
    """Fresh trainable MLP p_m -> mod_hiddens[m] -> d per (m, d), one copy per member.

    Each member's encoder output is padded to D_m = largest latent dim of m; the extra output
    columns are zero at init and masked downstream, so they stay zero. Members that do not use
    a latent dim of m carry zero encoder params (never used, zero gradient).
    Params: enc[m] = list of {"w", "b"} with leaves [M, ...] (None where m has no latent dim).
    """
    if len(mod_hiddens) != spec.num_modalities:
        raise ValueError(f"mod_hiddens has {len(mod_hiddens)} entries, expected one per "
                         f"modality ({spec.num_modalities}).")
    flags = jnp.asarray(trainable_flags(spec, freeze=freeze, reproduce_b3=reproduce_b3))

    def init(key):
        enc = []
        for m in range(spec.num_modalities):
            lat = _latent_dims(spec, m)
            if not lat:
                enc.append(None)
                continue
            sizes = (spec.modality_dims[m], *mod_hiddens[m], max(lat))
            per_d = {}
            for d in lat:  # same (m, d) -> same init for every member using it
                layers = cohort_lib.init_mlp(jax.random.fold_in(jax.random.fold_in(key, m), d),
                                             (*sizes[:-1], d))
                layers[-1] = {"w": cohort_lib.pad_to(layers[-1]["w"], max(lat)),
                              "b": cohort_lib.pad_to(layers[-1]["b"], max(lat))}
                per_d[d] = layers
            zero = jax.tree.map(jnp.zeros_like, per_d[lat[0]])
            members = [per_d[dims_c[m]] if modes_c[m] == LATENT else zero
                       for dims_c, modes_c in zip(spec.dims, spec.modes)]
            enc.append(cohort_lib.stack(members))
        return enc

    def blocks(enc, c, xs):
        lats = [None if e is None else cohort_lib.mlp_apply(_maybe_frozen(e, flags[c, m]), xs[m])
                for m, e in enumerate(enc)]
        raws = [xs[m] if _uses(spec, m, FULL) else None for m in range(spec.num_modalities)]
        return _assemble(spec, c, raws, lats)

    return Extractor(init, blocks)


def make_encoder_extractor(spec: CohortSpec, chains: Sequence[Optional[list]], *,
                           mod_hiddens: Sequence[Sequence[int]], freeze: bool = False,
                           reproduce_b3: bool = False) -> Extractor:
    """Pre-trained chains (from `pretrain_chain`) tiled to M copies, sliced by depth per member.

    Args:
      chains: per modality the layers of p_m -> mod_hiddens[m] -> latent dims (descending, as in
        spec.mod_outs without 0 and p_m) -> out, or None where m has no latent dim.
      freeze, reproduce_b3: see `trainable_flags`.
    """
    flags = jnp.asarray(trainable_flags(spec, freeze=freeze, reproduce_b3=reproduce_b3))
    depth = np.zeros((spec.num_members, spec.num_modalities), np.int32)
    for m in range(spec.num_modalities):
        lat = _latent_dims(spec, m)
        if not lat:
            continue
        if chains[m] is None or len(chains[m]) != len(mod_hiddens[m]) + len(lat) + 1:
            raise ValueError(f"chains[{m}] must have {len(mod_hiddens[m]) + len(lat) + 1} layers "
                             f"(hiddens {list(mod_hiddens[m])} + latents {lat} + output).")
        for c, dims_c in enumerate(spec.dims):
            depth[c, m] = lat.index(dims_c[m]) if dims_c[m] in lat else 0
    depth = jnp.asarray(depth)

    def init(key):
        del key  # deterministic: every member starts from the pre-trained chain
        return [None if ch is None or not _latent_dims(spec, m) else
                jax.tree.map(lambda a: jnp.broadcast_to(a, (spec.num_members, *a.shape)), ch[:-1])
                for m, ch in enumerate(chains)]

    def blocks(enc, c, xs):
        lats = []
        for m, e in enumerate(enc):
            if e is None:
                lats.append(None)
                continue
            e = _maybe_frozen(e, flags[c, m])
            n_hid, width = len(mod_hiddens[m]), max(_latent_dims(spec, m))
            h, outs = xs[m], []
            for i, layer in enumerate(e):
                h = jax.nn.relu(h @ layer["w"] + layer["b"][None, :])
                if i >= n_hid:
                    outs.append(cohort_lib.pad_to(h, width))
            lats.append(jnp.stack(outs)[depth[c, m]])
        raws = [xs[m] if _uses(spec, m, FULL) else None for m in range(spec.num_modalities)]
        return _assemble(spec, c, raws, lats)

    return Extractor(init, blocks)


def pretrain_chain(key, x_train, y_train, x_val, y_val, *, hidden: Sequence[int],
                   latent_dims: Sequence[int], out_dim: int, task: str, learning_rate: float,
                   weight_decay: float = 0.0, epochs: int = 10, batch_size: int = 64) -> list:
    """Supervised pre-training of one modality chain; returns the best-val-epoch layers.

    Chain: p_m -> hidden -> latent_dims (descending) -> out_dim, ReLU after every layer but the
    last; PyTorch-style Adam with L2 weight decay added to the gradient; MSE (mean) or CE.
    y is float [N] (regression, C = 1) or int [N] (classification).
    """
    check_task(task)
    sizes = (x_train.shape[1], *hidden, *sorted(latent_dims, reverse=True), out_dim)
    k_init, k_shuffle = jax.random.split(key)
    params = cohort_lib.init_mlp(k_init, sizes)
    tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))

    def loss_fn(p, x, y, mask=None):
        return task_loss(cohort_lib.mlp_apply(p, x), y, mask, task)

    @jax.jit
    def epoch(p, opt, k, x, y, xv, yv):
        n = x.shape[0]
        nb = -(-n // batch_size)
        perm = jnp.pad(jax.random.permutation(k, n), (0, nb * batch_size - n))
        valid = (jnp.arange(nb * batch_size) < n).astype(jnp.float32).reshape(nb, batch_size)

        def step(carry, inp):
            p, opt = carry
            idx, v = inp
            g = jax.grad(loss_fn)(p, x[idx], y[idx], v)
            upd, opt = tx.update(g, opt, p)
            return (optax.apply_updates(p, upd), opt), None

        (p, opt), _ = jax.lax.scan(step, (p, opt), (perm.reshape(nb, batch_size), valid))
        return p, opt, loss_fn(p, xv, yv)

    opt = tx.init(params)
    best, best_val = params, np.inf
    for e in range(epochs):
        params, opt, val = epoch(params, opt, jax.random.fold_in(k_shuffle, e), x_train, y_train,
                                 x_val, y_val)
        if float(val) < best_val:
            best, best_val = params, float(val)
    return best

