"""MetaMMF layers: the meta-information extractor and the item-specific fusion layers.

Every fusion kind gives item i its own weight W_i [D_in, D_out] computed from its meta vector
s_i [S] (spec section 2):

- `dense`:   W_i = M + sum_k s_ik T_k                      (reference `MetaLayer`)
- `cp`:      W_i = M + A diag(C s_i) B, C [R, S]          (the paper's CP decomposition)
- `cp_repo`: W_i = M + (s_i . c_bar) A B, C [R*S, 1]      (what the reference `CPDLayer` computes)
- `static`:  W_i = M                                      (ablation: no item-specific part)

Each kind is written for ONE item (`apply_one`), in factored form that never builds W_i, e.g.
cp: `x_i @ M + ((x_i @ A) * (s_i @ C.T)) @ B`. `jax.vmap` of it over items is the batched algebra
of spec section 8.3 (the same GEMMs; `benchmarks/bench_fusion.py` times both), so the
[I, D_in, D_out] per-item weights (about 115 GB at the reference's MovieLens dims) never exist.
`item_weight` builds one W_i and is only the test reference.

    fusion = make_fusion("cp", dims=(160, 80, 32), s_dim=5, rank=16)
    params = fusion.init(key)                  # list of per-layer param dicts
    out = fusion.apply(params, x, s)           # [I, 160], [I, 5] -> [I, 32]

Also holds `Recommender`, the interface every model in `metammf` returns.
"""
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


def no_extra_inputs(features, modality_slices, graph):
    """The default `Recommender.prepare_inputs`: nothing beyond "features" and "graph"."""
    del features, modality_slices, graph
    return {}


class Recommender(NamedTuple):
    """A recommender as pure, un-jitted functions.

    Attributes:
        init: key -> params (plain nested dict of arrays).
        embed: (params, inputs, key, train: bool) -> (user_emb [U, H], item_emb [I, H]).
            `inputs` is a dict of arrays: "features" float32 [I, F], "graph" (a `graph.Graph`)
            and whatever `prepare_inputs` returned.
        prepare_inputs: (features [I, F], modality_slices, graph) -> dict of extra arrays for
            `inputs`, computed once on the host before training (LATTICE's kNN graphs); the
            default returns {}.
    """

    init: Callable
    embed: Callable
    prepare_inputs: Callable = no_extra_inputs


def xavier_uniform(key, shape, fan_in, fan_out):
    """torch.nn.init.xavier_uniform_: U(-b, b) with b = sqrt(6 / (fan_in + fan_out))."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def dense_init(key, d_in, d_out):
    """One Xavier-uniform matrix [d_in, d_out]."""
    return xavier_uniform(key, (d_in, d_out), d_in, d_out)


def leaky_relu(x):
    return jax.nn.leaky_relu(x, negative_slope=0.01)


# ---- meta-information extractor -----------------------------------------------------------------

def meta_info_init(key, d_in, hidden, s_dim):
    """Params of the extractor MLP d_in -> hidden -> s_dim (weights Xavier, biases torch default).

    Returns:
        {"W1": [F, H], "b1": [H], "W2": [H, S], "b2": [S]}.
    """
    k1, k2, k3, k4 = jax.random.split(key, 4)
    b1, b2 = 1.0 / math.sqrt(d_in), 1.0 / math.sqrt(hidden)
    return {
        "W1": dense_init(k1, d_in, hidden),
        "b1": jax.random.uniform(k2, (hidden,), jnp.float32, -b1, b1),
        "W2": dense_init(k3, hidden, s_dim),
        "b2": jax.random.uniform(k4, (s_dim,), jnp.float32, -b2, b2),
    }


def meta_info(params, feat):
    """Meta vectors s = relu(feat W1 + b1) W2 + b2 (no activation on s, as in the reference).

    Args:
        params: from `meta_info_init`.
        feat: float32 [n, F].

    Returns:
        float32 [n, S].
    """
    h = jax.nn.relu(feat @ params["W1"] + params["b1"][None, :])
    return h @ params["W2"] + params["b2"][None, :]



# ---- fusion kinds: one layer, one item ----------------------------------------------------------

class FusionLayer(NamedTuple):
    """One kind of fusion layer, written for a single item.

    Attributes:
        init: (key, din, dout, s_dim, rank) -> params dict of one layer.
        apply_one: (params, x_i [din], s_i [S]) -> [dout], factored: never builds W_i.
        item_weight: (params, s_i [S]) -> W_i [din, dout]; the per-item test reference.
    """

    init: Callable
    apply_one: Callable
    item_weight: Callable

    def apply(self, params, x, s):
        """One layer over n items: `apply_one` vmapped, [n, din], [n, S] -> [n, dout]."""
        return jax.vmap(self.apply_one, in_axes=(None, 0, 0))(params, x, s)


def _dense_init(key, din, dout, s_dim, rank):
    del rank
    kt, km = jax.random.split(key)
    # torch Xavier on the reference's (S, din*dout) tensor: T starts near zero.
    t = xavier_uniform(kt, (s_dim, din, dout), din * dout, s_dim)
    return {"M": dense_init(km, din, dout), "T": t}


def _dense_apply_one(params, x_i, s_i):
    t = params["T"]
    n_s, din, dout = t.shape
    if dout >= din:
        # Khatri-Rao row: vmapped, one GEMM [n, S*din] @ [S*din, dout].
        dyn = (s_i[:, None] * x_i[None, :]).reshape(n_s * din) @ t.reshape(n_s * din, dout)
    else:
        # Contract din first: the vmapped intermediate is [n, S, dout], smaller than [n, S*din].
        dyn = jnp.einsum("k,ko->o", s_i, jnp.einsum("i,kio->ko", x_i, t))
    return x_i @ params["M"] + dyn


def _dense_item_weight(params, s_i):
    return params["M"] + jnp.einsum("k,kio->io", s_i, params["T"])


def _cp_init(key, din, dout, s_dim, rank):
    ka, kb, kc, km = jax.random.split(key, 4)
    return {
        "M": dense_init(km, din, dout),
        "A": dense_init(ka, din, rank),
        "B": dense_init(kb, rank, dout),
        "C": dense_init(kc, rank, s_dim),
    }


def _cp_apply_one(params, x_i, s_i):
    gate = s_i @ params["C"].T                                  # [R] = C s_i
    return x_i @ params["M"] + ((x_i @ params["A"]) * gate) @ params["B"]


def _cp_item_weight(params, s_i):
    gate = params["C"] @ s_i                                    # [R]
    return params["M"] + (params["A"] * gate[None, :]) @ params["B"]


def _cp_repo_init(key, din, dout, s_dim, rank):
    ka, kb, kc, km = jax.random.split(key, 4)
    return {
        "M": dense_init(km, din, dout),
        "A": dense_init(ka, din, rank),
        "B": dense_init(kb, rank, dout),
        "C": dense_init(kc, rank * s_dim, 1),
    }


def _c_bar(params, s_dim):
    """c_bar [S] with c_bar_k = sum_r C[r*S + k]: the R axis of the repo's C collapses."""
    return params["C"].reshape(-1, s_dim).sum(axis=0)


def _cp_repo_apply_one(params, x_i, s_i):
    alpha = s_i @ _c_bar(params, s_i.shape[0])                  # scalar
    return x_i @ params["M"] + alpha * ((x_i @ params["A"]) @ params["B"])


def _cp_repo_item_weight(params, s_i):
    alpha = s_i @ _c_bar(params, s_i.shape[0])
    return params["M"] + alpha * (params["A"] @ params["B"])


def _static_init(key, din, dout, s_dim, rank):
    del s_dim, rank
    return {"M": dense_init(key, din, dout)}


def _static_apply_one(params, x_i, s_i):
    del s_i
    return x_i @ params["M"]


def _static_item_weight(params, s_i):
    del s_i
    return params["M"]


FUSION_KINDS = {
    "dense": FusionLayer(_dense_init, _dense_apply_one, _dense_item_weight),
    "cp": FusionLayer(_cp_init, _cp_apply_one, _cp_item_weight),
    "cp_repo": FusionLayer(_cp_repo_init, _cp_repo_apply_one, _cp_repo_item_weight),
    "static": FusionLayer(_static_init, _static_apply_one, _static_item_weight),
}


# ---- the fusion chain ---------------------------------------------------------------------------

class Fusion(NamedTuple):
    """A chain of fusion layers of one kind, as un-jitted pure functions.

    Attributes:
        init: key -> list of N per-layer params dicts.
        apply: (params, x [I, D_in], s [I, S]) -> [I, D_out]; `apply_one` vmapped over items.
        apply_one: (params, x_i [D_in], s_i [S]) -> [D_out]; leaky_relu(0.01) between layers,
            none after the last, no biases. s / s_i may be None for the `static` kind.
    """

    init: Callable
    apply: Callable
    apply_one: Callable


def _shape_error(what, expected, got):
    return ValueError(f"{what} must have shape {expected}, got {got}.")


def make_fusion(kind, dims, s_dim, rank):
    """The fusion chain dims[0] -> dims[1] -> ... -> dims[-1] of one kind.

    Args:
        kind: a key of `FUSION_KINDS`: "dense", "cp", "cp_repo" or "static".
        dims: layer widths (D_in, ..., D_out), at least two, all >= 1.
        s_dim: S, meta vector size.
        rank: R, CP rank (used by `cp` and `cp_repo`).

    Returns:
        Fusion(init, apply, apply_one). `apply` and `apply_one` raise ValueError on inputs whose
        shapes do not fit dims / s_dim (shapes are static, so this also holds under jit).

    Raises:
        ValueError: on an unknown kind, fewer than two dims, or non-positive sizes.
    """
    if kind not in FUSION_KINDS:
        raise ValueError(
            f"fusion kind must be one of {sorted(FUSION_KINDS)}, got {kind!r}. "
            "Set model.fusion to a listed kind.")
    layer = FUSION_KINDS[kind]
    dims = tuple(int(d) for d in dims)
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(
            f"fusion dims must list at least an input and an output width, all >= 1, got "
            f"{list(dims)}. Pass e.g. dims=(F, 80, 32).")
    s_dim, rank = int(s_dim), int(rank)
    if s_dim < 1 or rank < 1:
        raise ValueError(f"s_dim and rank must be >= 1, got s_dim={s_dim}, rank={rank}.")
    needs_s = kind != "static"

    def init(key):
        keys = jax.random.split(key, len(dims) - 1)
        return [layer.init(k, din, dout, s_dim, rank)
                for k, din, dout in zip(keys, dims[:-1], dims[1:])]

    def check_params(params):
        widths = [tuple(p["M"].shape) for p in params] if isinstance(params, (list, tuple)) \
            else None
        if widths != list(zip(dims[:-1], dims[1:])):
            raise ValueError(
                f"fusion params must be the list `init` returns, with M shapes "
                f"{list(zip(dims[:-1], dims[1:]))}, got {widths}.")

    def apply_one(params, x_i, s_i):
        check_params(params)
        if x_i.shape != (dims[0],):
            raise _shape_error("fusion apply_one: x_i", f"[D_in] = ({dims[0]},)", x_i.shape)
        if needs_s and (s_i is None or s_i.shape != (s_dim,)):
            raise _shape_error(f"fusion apply_one ({kind}): s_i", f"[S] = ({s_dim},)",
                               None if s_i is None else s_i.shape)
        h = x_i
        for n, p in enumerate(params):
            if n:
                h = leaky_relu(h)
            h = layer.apply_one(p, h, s_i)
        return h

    def apply(params, x, s):
        if x.ndim != 2 or x.shape[1] != dims[0]:
            raise _shape_error("fusion apply: x", f"[I, D_in] = [I, {dims[0]}]", x.shape)
        if needs_s and (s is None or s.shape != (x.shape[0], s_dim)):
            raise _shape_error(f"fusion apply ({kind}): s", f"[I, S] = [{x.shape[0]}, {s_dim}]",
                               None if s is None else s.shape)
        if s is not None and s.shape[:1] != x.shape[:1]:
            raise _shape_error("fusion apply: s", f"[I, S] with I = {x.shape[0]}", s.shape)
        return jax.vmap(apply_one, in_axes=(None, 0, 0))(params, x, s)

    return Fusion(init, apply, apply_one)
