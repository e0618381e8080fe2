"""MetaMMF layers: the meta-information extractor and the item-specific fusion layers.

Every fusion kind gives item i its own weight W_i [din, dout] computed from its meta vector
s_i [S] (spec section 2):

- `dense`:   W_i = M + sum_k s_ik T_k                      (reference `MetaLayer`)
- `cp`:      W_i = M + A diag(C s_i) B, C [R, S]          (the paper's CP decomposition)
- `cp_repo`: W_i = M + (s_i . c_bar) A B, C [R*S, 1]      (what the reference `CPDLayer` computes)
- `static`:  W_i = M                                      (ablation: no item-specific part)

`apply` never builds the [n, din, dout] per-item weights (about 115 GB at the reference's MovieLens
dims): it uses the factored algebra of spec section 8.3. `item_weight` builds one W_i and is only
the test reference.

Also holds `Recommender`, the interface every model in `metammf` returns.
"""
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Recommender(NamedTuple):
    """A recommender as two pure, un-jitted functions.

    Attributes:
        init: key -> params (plain nested dict of arrays).
        embed: (params, inputs, key, train: bool) -> (user_emb [U, H], item_emb [I, H]).
            `inputs` is a dict of arrays: "features" float32 [I, F] and, for graph models, "graph".
    """

    init: Callable
    embed: Callable


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


# ---- fusion kinds -------------------------------------------------------------------------------

class FusionKind(NamedTuple):
    """One kind of fusion layer.

    Attributes:
        init: (key, din, dout, s_dim, rank) -> params dict.
        apply: (params, x [n, din], s [n, S]) -> [n, dout], batched without per-item weights.
        item_weight: (params, s_i [S]) -> W_i [din, dout]; the per-item test reference.
    """

    init: Callable
    apply: Callable
    item_weight: Callable


def _dense_init(key, din, dout, s_dim, rank):
    del rank
    kt, km = jax.random.split(key)
    # torch Xavier on the reference's (S, din*dout) tensor: T starts near zero.
    t = xavier_uniform(kt, (s_dim, din, dout), din * dout, s_dim)
    return {"M": dense_init(km, din, dout), "T": t}


def _dense_apply(params, x, s):
    t = params["T"]
    n_s, din, dout = t.shape
    n = x.shape[0]
    if dout >= din:
        # Khatri-Rao row products: one GEMM with an [n, S*din] intermediate.
        kr = (s[:, :, None] * x[:, None, :]).reshape(n, n_s * din)
        dyn = kr @ t.reshape(n_s * din, dout)
    else:
        # Contract din first: the intermediate is [n, S, dout], smaller than [n, S*din].
        per_k = jnp.einsum("ni,kio->nko", x, t)
        dyn = jnp.einsum("nk,nko->no", s, per_k)
    return x @ params["M"] + dyn


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


def _cp_apply(params, x, s):
    gate = s @ params["C"].T                                    # [n, R]
    return x @ params["M"] + ((x @ params["A"]) * gate) @ params["B"]


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


def _cp_repo_apply(params, x, s):
    alpha = s @ _c_bar(params, s.shape[1])                      # [n]
    return x @ params["M"] + alpha[:, None] * ((x @ params["A"]) @ params["B"])


def _cp_repo_item_weight(params, s_i):
    alpha = s_i @ _c_bar(params, s_i.shape[0])
    return params["M"] + alpha * (params["A"] @ params["B"])


def _static_init(key, din, dout, s_dim, rank):
    del s_dim, rank
    return {"M": dense_init(key, din, dout)}


def _static_apply(params, x, s):
    del s
    return x @ params["M"]


def _static_item_weight(params, s_i):
    del s_i
    return params["M"]


FUSION_KINDS = {
    "dense": FusionKind(_dense_init, _dense_apply, _dense_item_weight),
    "cp": FusionKind(_cp_init, _cp_apply, _cp_item_weight),
    "cp_repo": FusionKind(_cp_repo_init, _cp_repo_apply, _cp_repo_item_weight),
    "static": FusionKind(_static_init, _static_apply, _static_item_weight),
}


def _check_kind(kind):
    if kind not in FUSION_KINDS:
        raise ValueError(
            f"fusion kind must be one of {sorted(FUSION_KINDS)}, got {kind!r}. "
            "Set model.fusion to a listed kind.")
    return FUSION_KINDS[kind]


def fusion_init(key, kind, dims, s_dim, rank):
    """Params of a chain of fusion layers dims[0] -> dims[1] -> ... -> dims[-1].

    Args:
        key: PRNG key.
        kind: a key of `FUSION_KINDS`.
        dims: layer widths [d0, ..., dN], N >= 1.
        s_dim: S, meta vector size.
        rank: R, CP rank (used by `cp` and `cp_repo`).

    Returns:
        list of N per-layer params dicts.

    Raises:
        ValueError: on an unknown kind, fewer than two dims, or non-positive sizes.
    """
    fk = _check_kind(kind)
    dims = [int(d) for d in dims]
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(
            f"fusion dims must list at least an input and an output width, all >= 1, got {dims}. "
            "Pass e.g. dims=[F, 80, 32].")
    if s_dim < 1 or rank < 1:
        raise ValueError(
            f"s_dim and rank must be >= 1, got s_dim={s_dim}, rank={rank}.")
    keys = jax.random.split(key, len(dims) - 1)
    return [fk.init(k, din, dout, s_dim, rank)
            for k, din, dout in zip(keys, dims[:-1], dims[1:])]


def fuse(kind, params, feat, s):
    """Runs the fusion chain: leaky_relu(0.01) between layers, none after the last, no biases.

    Args:
        kind: a key of `FUSION_KINDS`.
        params: list from `fusion_init`.
        feat: float32 [I, F] with F = dims[0].
        s: float32 [I, S] meta vectors.

    Returns:
        float32 [I, dims[-1]].
    """
    fk = _check_kind(kind)
    h = feat
    for n, layer in enumerate(params):
        if n:
            h = leaky_relu(h)
        h = fk.apply(layer, h, s)
    return h
