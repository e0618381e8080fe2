"""MetaMMF recommenders (Liu et al., TOIS 2023) on MF and GCN backbones, and the model table.

Item representation e_i = fuse(x_i; W_i(s_i)) ++ item-id embedding, with s_i = meta_info(x_i)
(spec section 2). Users are id embeddings of the same width. MF scores <e_u, e_i>; GCN first runs
two GraphSAGE mean layers over the bipartite train graph (spec section 2.2 item 5):
X = [users; items] -> sage -> leaky_relu -> dropout(0.5) -> sage -> dropout(0.2).

`MODELS` is the one explicit name -> `ModelSpec` dict the trainer uses: every factory takes the
keyword arguments `n_users, n_items, feature_dim, modality_slices` (from the data) plus its own
`options` (from the config). The MetaMMF family reads its options from `config.model.*`, each
baseline from its own sub-ConfigDict `config.model.<name>`, whose keys are exactly its options.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from metafusion_jax.metammf import baselines
from metafusion_jax.metammf import floors
from metafusion_jax.metammf import freedom
from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import lattice
from metafusion_jax.metammf import layers
from metafusion_jax.metammf import mmgcn_model
from metafusion_jax.metammf.layers import Recommender
from metafusion_jax.training import random_bits

__all__ = ["MODELS", "ModelSpec", "Recommender", "dropout", "make_metammf", "make_static_mlp"]

BACKBONES = ("mf", "gcn")


class ModelSpec(NamedTuple):
    """How the trainer builds one model of `MODELS` from `config.model`.

    Attributes:
        factory: (*, n_users, n_items, feature_dim, modality_slices, **options) -> Recommender.
        options: the factory's own keyword arguments, each settable from the config (a test
            checks they are exactly the factory's keyword arguments and defaults).
        config_group: where the options live: "" = `config.model` itself (the MetaMMF family's
            shared fields), else the sub-ConfigDict `config.model.<config_group>`.
    """

    factory: Callable
    options: tuple
    config_group: str = ""


DROPOUT_LEVELS = 1 << 16  # the drop probability is rounded to a multiple of 1 / 65,536


def dropout(key, x, rate):
    """Inverted dropout: zero with probability `rate`, scale survivors by 1 / P(keep).

    Each 32-bit threefry word gives two 16-bit integers, compared with round(rate * 65536):
    half the threefry work of `jax.random.bernoulli` (one word per element), measured 2.4x
    faster on [61471, 64]; on the MovieLens-size GCN step the two masks cost as much as the four
    graph aggregations (benchmarks/README.md). The words are `jax.random.bits(key, [N, ceil(rest
    / 2)])`, computed by `training.random_bits.bits` (the same words, 5x faster on CPU, where JAX
    lowers threefry as a loop that XLA cannot fuse). The drop probability is rate rounded to a
    multiple of 2^-16 (0.2 -> 0.199997); survivors are scaled by the exact 1 / P(keep), so
    E[dropout(x)] = x.

    For x of 2 or more axes the words are drawn per leading row ([N, ceil(rest / 2)], both
    halves of a word stay in its row; a 1-D x is one row), so on a mesh the mask is split like
    x's rows: with JAX's partitionable threefry each device draws only its own rows' bits (a flat
    draw would be replicated on every device).
    """
    if rate <= 0.0:
        return x
    threshold = int(round(float(rate) * DROPOUT_LEVELS))
    lead = x.shape[0] if x.ndim >= 2 else 1
    rest = x.size // max(lead, 1)
    words = random_bits.bits(key, (lead, (rest + 1) // 2))
    halves = jnp.concatenate([words & 0xFFFF, words >> 16], axis=1)[:, :rest].reshape(x.shape)
    keep = halves >= jnp.uint32(threshold)
    scale = DROPOUT_LEVELS / (DROPOUT_LEVELS - threshold)
    return jnp.where(keep, x * jnp.asarray(scale, x.dtype), 0.0)


def _check_common(n_users, n_items, feature_dim):
    for name, value in (("n_users", n_users), ("n_items", n_items),
                        ("feature_dim", feature_dim)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")


def make_metammf(*, n_users, n_items, feature_dim, modality_slices=None, fusion="dense",
                 meta_hidden=None, s_dim=5, fusion_dims=(80, 32), rank=16, id_dim=32,
                 user_dim=64, backbone="gcn", gcn_dropout=(0.5, 0.2)):
    """MetaMMF: meta-learned item-specific fusion, on an MF or a GCN backbone.

    Args:
        n_users: U.
        n_items: I.
        feature_dim: F, width of inputs["features"].
        modality_slices: unused (the fusion sees the concatenation); accepted for the table.
        fusion: a key of `layers.FUSION_KINDS`: "dense", "cp", "cp_repo" or "static".
        meta_hidden: hidden width of the meta extractor; None uses F (as the reference).
        s_dim: S, meta vector size.
        fusion_dims: widths after the input, e.g. (80, 32) or (1024, 512, 256, 32).
        rank: R for the cp kinds.
        id_dim: item-id embedding width.
        user_dim: user embedding width; must equal fusion_dims[-1] + id_dim.
        backbone: "mf" or "gcn".
        gcn_dropout: (after layer 1, on the output) dropout rates, used only when train=True.

    Returns:
        Recommender whose embed gives user_emb [U, user_dim] and item_emb [I, user_dim].

    Raises:
        ValueError: on an unknown fusion kind or backbone, mismatched widths, or a dropout rate
            outside [0, 1).
    """
    del modality_slices
    _check_common(n_users, n_items, feature_dim)
    if fusion not in layers.FUSION_KINDS:
        raise ValueError(
            f"fusion must be one of {sorted(layers.FUSION_KINDS)}, got {fusion!r}. "
            "Set config.model.fusion to a listed kind.")
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}.")
    fusion_dims = tuple(int(d) for d in fusion_dims)
    if not fusion_dims:
        raise ValueError("fusion_dims must name at least one layer width, got ().")
    if user_dim != fusion_dims[-1] + id_dim:
        raise ValueError(
            f"user_dim must equal fusion_dims[-1] + id_dim = {fusion_dims[-1]} + {id_dim} = "
            f"{fusion_dims[-1] + id_dim} so users and items share one space, got {user_dim}. "
            "Change user_dim, id_dim or the last fusion width.")
    meta_hidden = int(meta_hidden or feature_dim)
    fuser = layers.make_fusion(fusion, (int(feature_dim),) + fusion_dims, s_dim, rank)
    rates = tuple(gcn_dropout)
    if len(rates) != 2 or not all(0.0 <= float(r) < 1.0 for r in rates):
        raise ValueError(
            f"gcn_dropout must be two dropout rates in [0, 1) (after GCN layer 1, on its "
            f"output), got {gcn_dropout!r}. A rate of 1 drops everything (NaN gradients); use "
            "e.g. (0.5, 0.2), or (0.0, 0.0) for no dropout.")
    drop1, drop2 = (float(r) for r in rates)

    def init(key):
        k_meta, k_fus, k_item, k_user, k_gcn = jax.random.split(key, 5)
        params = {
            "fusion": fuser.init(k_fus),
            "item_id": layers.dense_init(k_item, n_items, id_dim),
            "user": layers.dense_init(k_user, n_users, user_dim),
        }
        if fusion != "static":
            params["meta"] = layers.meta_info_init(k_meta, feature_dim, meta_hidden, s_dim)
        if backbone == "gcn":
            k1, k2 = jax.random.split(k_gcn)
            params["gcn"] = [graph_lib.sage_init(k1, user_dim, user_dim),
                             graph_lib.sage_init(k2, user_dim, user_dim)]
        return params

    def item_rep(params, feat):
        s = None if fusion == "static" else layers.meta_info(params["meta"], feat)
        fused = fuser.apply(params["fusion"], feat, s)
        return jnp.concatenate([fused, params["item_id"]], axis=1)

    def embed(params, inputs, key, train):
        items = item_rep(params, inputs["features"])
        if backbone == "mf":
            return params["user"], items
        graph = inputs["graph"]
        x = jnp.concatenate([params["user"], items], axis=0)
        x = layers.leaky_relu(graph_lib.sage(params["gcn"][0], x, graph))
        k1, k2 = jax.random.split(key)
        if train:
            x = dropout(k1, x, drop1)
        x = graph_lib.sage(params["gcn"][1], x, graph)
        if train:
            x = dropout(k2, x, drop2)
        return x[:n_users], x[n_users:]

    return Recommender(init, embed)


def make_static_mlp(*, n_users, n_items, feature_dim, modality_slices=None, fusion_dims=(80, 32),
                    id_dim=32, user_dim=64, backbone="gcn", gcn_dropout=(0.5, 0.2)):
    """Static-fusion ablation: MetaMMF with W_i = M for every item (spec section 5).

    A bias-free MLP over the concatenated features (no meta extractor, no T), ++ item-id
    embedding, on the MF or GCN backbone: exactly `make_metammf(fusion="static", ...)`, same
    params and values. Arguments as make_metammf's.
    """
    return make_metammf(n_users=n_users, n_items=n_items, feature_dim=feature_dim,
                        modality_slices=modality_slices, fusion="static",
                        fusion_dims=fusion_dims, id_dim=id_dim, user_dim=user_dim,
                        backbone=backbone, gcn_dropout=gcn_dropout)


METAMMF_OPTIONS = ("fusion", "backbone", "meta_hidden", "s_dim", "fusion_dims", "rank", "id_dim",
                   "user_dim", "gcn_dropout")

MODELS = {
    "metammf": ModelSpec(make_metammf, METAMMF_OPTIONS),
    "static_mlp": ModelSpec(make_static_mlp,
                            ("backbone", "fusion_dims", "id_dim", "user_dim", "gcn_dropout")),
    "vbpr": ModelSpec(baselines.make_vbpr, ("id_dim", "content_dim"), "vbpr"),
    "lightgcn": ModelSpec(baselines.make_lightgcn, ("dim", "n_layers"), "lightgcn"),
    "mmgcn": ModelSpec(mmgcn_model.make_mmgcn, ("dim", "n_layers", "mlp_dim", "concat"),
                       "mmgcn"),
    "lattice": ModelSpec(lattice.make_lattice, ("dim", "feat_embed_dim", "n_layers",
                                                "n_item_layers", "knn_k", "lambda_coeff"),
                         "lattice"),
    "freedom": ModelSpec(freedom.make_freedom, ("dim", "n_layers", "n_mm_layers", "knn_k",
                                                "dropout", "modality_weights"), "freedom"),
    # The floors: no options, so no config group.
    "popularity": ModelSpec(floors.make_popularity, ()),
    "random": ModelSpec(floors.make_random, ("dim", "seed"), "random"),
}
