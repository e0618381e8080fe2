"""Meta Fusion cohort: the static member specification and the stacked, padded member network.

A cohort holds one fusion network per combination of per-modality latent dimensions (spec
section 1 "Cohort"). Members have different true input widths F_c = sum_m d_{c,m}; to run them
with one `jax.vmap` every modality block is zero-padded to a common width W_m, the blocks are
concatenated to width W = sum_m W_m and multiplied by a fixed 0/1 input mask. The first head
layer is initialised as PyTorch does for the TRUE fan-in F_c and its masked rows are zero; masked
inputs are zero, so those rows get zero gradient and Adam (zero moments, no weight decay) keeps
them at zero: every member is exactly the small unpadded network.

Params are one pytree whose leaves lead with the member axis M:
    {"head": [{"w": [M, W, H1], "b": [M, H1]}, ..., {"w": [M, H, C], "b": [M, C]}],
     "enc": extractor params (see extractors.py), leaves [M, ...]}
"""
import itertools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

DROP, FULL, LATENT = "drop", "full", "latent"


class CohortSpec(NamedTuple):
    """Static (host) description of a cohort. Hashable: every field is a tuple.

    Attributes:
      modality_dims: K raw widths p_m.
      mod_outs: K tuples of latent dims, sorted descending (0 = drop, p_m = full).
      dims: M tuples of K dims d_{c,m}, in the reference member order.
      modes: M tuples of K modes in {"drop", "full", "latent"}.
      widths: K block widths W_m = max(p_m if any member uses full, max latent d).
    """
    modality_dims: tuple
    mod_outs: tuple
    dims: tuple
    modes: tuple
    widths: tuple

    @property
    def num_members(self) -> int:
        return len(self.dims)

    @property
    def num_modalities(self) -> int:
        return len(self.modality_dims)

    @property
    def total_width(self) -> int:
        return int(sum(self.widths))


def _is_int(value) -> bool:
    """An integer (numpy integers too, not bool); a float such as 60.5 or 60.0 is not one."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


def make_cohort_spec(mod_outs: Sequence[Sequence[int]],
                     modality_dims: Sequence[int]) -> CohortSpec:
    """Builds the cohort in the reference order: `itertools.product` of descending mod_outs.

    Args:
      mod_outs: K lists of dims per modality; 0 drops the modality, p_m passes it raw,
        0 < d < p_m uses a d-dimensional extractor.
      modality_dims: K raw widths p_m.

    Returns:
      A CohortSpec with M = number of non-all-zero combinations.

    Raises:
      ValueError: on non-integer dims, mismatched lengths, empty lists, negative dims, dims
        above p_m, duplicates or an empty cohort.
    """
    for name, values in [("modality_dims", modality_dims)] + [
            (f"mod_outs[{m}]", v) for m, v in enumerate(mod_outs)]:
        bad = [v for v in values if not _is_int(v)]
        if bad:
            raise ValueError(f"{name} = {tuple(values)} has non-integer dims {bad}; give "
                             "integers (e.g. 60, not 60.5).")
    modality_dims = tuple(int(p) for p in modality_dims)
    if len(mod_outs) != len(modality_dims) or not modality_dims:
        raise ValueError(
            f"mod_outs has {len(mod_outs)} modality lists but modality_dims has "
            f"{len(modality_dims)} entries; give one latent-dim list per modality (K >= 1).")
    outs = []
    for m, (dims_m, p_m) in enumerate(zip(mod_outs, modality_dims)):
        dims_m = [int(d) for d in dims_m]
        if p_m <= 0:
            raise ValueError(f"modality_dims[{m}] must be positive, got {p_m}.")
        if not dims_m:
            raise ValueError(f"mod_outs[{m}] is empty; give at least one dim (0 drops it).")
        bad = [d for d in dims_m if d < 0 or d > p_m]
        if bad:
            raise ValueError(
                f"mod_outs[{m}] has dims {bad} outside [0, {p_m}] (the modality width p_{m}); "
                "use 0 to drop, p_m for the raw input, or a latent dim below p_m.")
        if len(set(dims_m)) != len(dims_m):
            raise ValueError(f"mod_outs[{m}] = {dims_m} has duplicate dims; list each once.")
        outs.append(tuple(sorted(dims_m, reverse=True)))
    dims = tuple(c for c in itertools.product(*outs) if any(c))
    if not dims:
        raise ValueError(
            f"mod_outs {[list(o) for o in outs]} gives an empty cohort (only the all-zeros "
            "member, which is skipped); give at least one non-zero dim.")
    modes = tuple(tuple(DROP if d == 0 else FULL if d == p else LATENT
                        for d, p in zip(c, modality_dims)) for c in dims)
    widths = []
    for m, p_m in enumerate(modality_dims):
        w = 0
        for c, mode in zip(dims, modes):
            if mode[m] != DROP:
                w = max(w, c[m])
        widths.append(w)
    return CohortSpec(modality_dims, tuple(outs), dims, modes, tuple(widths))


def block_offsets(spec: CohortSpec) -> tuple:
    """Start column of each modality block inside the padded input of width W."""
    return tuple(int(o) for o in np.concatenate([[0], np.cumsum(spec.widths)[:-1]]))


def input_mask(spec: CohortSpec) -> np.ndarray:
    """float32 [M, W]: 1 on the first d_{c,m} columns of each block, 0 elsewhere."""
    mask = np.zeros((spec.num_members, spec.total_width), np.float32)
    for c, dims_c in enumerate(spec.dims):
        for off, d in zip(block_offsets(spec), dims_c):
            mask[c, off:off + d] = 1.0
    return mask


def mode_flags(spec: CohortSpec, mode: str) -> np.ndarray:
    """float32 [M, K]: 1 where member c uses modality m in `mode`."""
    return np.array([[float(x == mode) for x in row] for row in spec.modes], np.float32)


def fan_in(spec: CohortSpec) -> np.ndarray:
    """float32 [M]: the true input width F_c = sum_m d_{c,m} of each member."""
    return np.array([sum(c) for c in spec.dims], np.float32)


def pad_to(x: jnp.ndarray, width: int) -> jnp.ndarray:
    """Zero-pads the last axis of x [..., D] to `width` >= D."""
    extra = width - x.shape[-1]
    if extra < 0:
        raise ValueError(f"cannot pad width {x.shape[-1]} down to {width}.")
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)]) if extra else x


def torch_linear_init(key, fan_in_, shape_w, shape_b):
    """PyTorch nn.Linear default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The package's one Linear init (cohort heads, encoders, the stacking meta-learner), drawn as
    U(-1, 1) * bound; fan_in_ may be traced (the first head layer uses the member's true fan-in).
    """
    kw, kb = jax.random.split(key)
    bound = 1.0 / jnp.sqrt(jnp.asarray(fan_in_, jnp.float32))
    w = jax.random.uniform(kw, shape_w, jnp.float32, -1.0, 1.0) * bound
    b = jax.random.uniform(kb, shape_b, jnp.float32, -1.0, 1.0) * bound
    return {"w": w, "b": b}


def init_mlp(key, sizes: Sequence[int], first_fan_in=None) -> list:
    """Init of an MLP with layer widths `sizes` (in, h1, ..., out), PyTorch-default per layer.

    Args:
      first_fan_in: fan-in used for the first layer's bound (default sizes[0]); may be traced.
    """
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        f = first_fan_in if (i == 0 and first_fan_in is not None) else a
        layers.append(torch_linear_init(k, f, (a, b), (b,)))
    return layers


def mlp_apply(layers: list, x: jnp.ndarray, final_relu: bool = False) -> jnp.ndarray:
    """Linear+ReLU for every layer but the last, then Linear (ReLU too if final_relu).

    Args:
      layers: list of {"w" [D_in, D_out], "b" [D_out]}.
      x: [B, D].

    Returns:
      [B, D_out of the last layer].

    The hidden activations are kept feature-major ([H, B]: the first layer writes h^T = W^T x^T,
    the next ones W^T h): under `jax.vmap` over members XLA CPU runs these batched GEMMs (and
    their backward) faster than the batch-major [B, H] form, 1.26x on the grad of a 72-member
    [240, 300, 200, 100, 1] head at batch 64 (benchmarks/README.md). Same maths, params and
    shapes as `x @ w + b` layer by layer; float sums may differ in the last bits.
    """
    h = None
    for i, layer in enumerate(layers):
        if i == 0:
            h = jnp.einsum("bd,dh->hb", x, layer["w"])
        else:
            h = jnp.einsum("db,dh->hb", h, layer["w"])
        h = h + layer["b"][:, None]
        if i < len(layers) - 1 or final_relu:
            h = jax.nn.relu(h)
    return x if h is None else h.T


def init_member(key, fan_in_, in_mask: jnp.ndarray, *, hidden: Sequence[int],
                out_dim: int) -> list:
    """Head params of one member: padded first layer, PyTorch init for the TRUE fan-in.

    Args:
      key: PRNG key.
      fan_in_: scalar F_c (may be traced, so the function vmaps over members).
      in_mask: float32 [W] 0/1 mask of the member's used input columns; masked rows are zero.
      hidden: hidden sizes H1..HL.
      out_dim: C.

    Returns:
      list of {"w", "b"} dicts, first "w" [W, H1].
    """
    sizes = (in_mask.shape[0], *hidden, out_dim)
    layers = init_mlp(key, sizes, first_fan_in=fan_in_)
    layers[0]["w"] = layers[0]["w"] * in_mask[:, None]
    return layers


def init_heads(key, spec: CohortSpec, *, hidden: Sequence[int], out_dim: int) -> list:
    """Stacked head params for all members: `jax.vmap(init_member)` over split keys."""
    keys = jax.random.split(key, spec.num_members)
    init = lambda k, f, m: init_member(k, f, m, hidden=hidden, out_dim=out_dim)
    return jax.vmap(init)(keys, jnp.asarray(fan_in(spec)), jnp.asarray(input_mask(spec)))


class Cohort(NamedTuple):
    """Un-jitted functions of a cohort model.

    init(key) -> params: stacked pytree, leaves [M, ...].
    apply(params, xs) -> F [M, B, C]: every member on the same batch xs (tuple of K arrays).
    member_apply(member_params, c, xs) -> [B, C]: one member (c: int32 index), vmapped by apply.
    """
    init: Callable
    apply: Callable
    member_apply: Callable
    spec: CohortSpec


def make_cohort(spec: CohortSpec, extractor, *, hidden: Sequence[int], out_dim: int) -> Cohort:
    """Member network = extractor blocks (padded, width W) * input mask -> MLP head -> C outputs.

    Args:
      spec: the cohort.
      extractor: an `extractors.Extractor` (init(key) -> enc params [M, ...];
        blocks(enc_member, c, xs) -> [B, W] padded unmasked member input).
      hidden: head hidden sizes, e.g. (300, 200, 100).
      out_dim: C (1 for regression, number of classes for classification).
    """
    if not _is_int(out_dim) or out_dim < 1:
        raise ValueError(f"out_dim must be an integer >= 1, got {out_dim!r}.")
    if any(not _is_int(h) or h < 1 for h in hidden):
        raise ValueError(f"hidden sizes must be integers >= 1, got {tuple(hidden)}.")
    mask = jnp.asarray(input_mask(spec))

    def init(key):
        k_head, k_enc = jax.random.split(key)
        return {"head": init_heads(k_head, spec, hidden=hidden, out_dim=out_dim),
                "enc": extractor.init(k_enc)}

    def member_apply(member_params, c, xs):
        x = extractor.blocks(member_params["enc"], c, xs) * mask[c][None, :]
        return mlp_apply(member_params["head"], x)

    def apply(params, xs):
        members = jnp.arange(spec.num_members)
        return jax.vmap(member_apply, in_axes=(0, 0, None))(params, members, xs)

    return Cohort(init, apply, member_apply, spec)


def stack(members: Sequence) -> object:
    """List of M per-member pytrees -> one pytree with leading axis M."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *members)


def unstack(stacked) -> list:
    """Pytree with leading axis M -> list of M per-member pytrees."""
    n = jax.tree.leaves(stacked)[0].shape[0]
    return [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(n)]
