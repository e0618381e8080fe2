"""Baselines for MetaMMF's comparison, in the same `Recommender` interface and BPR protocol.

This module holds VBPR, LightGCN and the argument checks the other baseline modules share;
LATTICE (`lattice.py`), FREEDOM (`freedom.py`), MMGCN (`mmgcn_model.py`) and the popularity and
random floors (`floors.py`) have modules of their own. Each factory takes keyword arguments
`n_users, n_items, feature_dim, modality_slices` (ignoring what it does not use) plus its own
sizes, which `models.MODELS` lists as the options of its `config.model.<name>` sub-config.
The static-fusion MLP lives in `models.py` (`make_static_mlp`) because it is MetaMMF with
W_i = M.
"""
import jax
import jax.numpy as jnp

from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import layers
from metafusion_jax.metammf.layers import Recommender


def check_sizes(**sizes):
    """Raises ValueError naming the first size < 1."""
    for name, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")


def check_slices(modality_slices, feature_dim):
    """The (name, start, stop) column blocks, checked against F; None or () = one block "all"."""
    if not modality_slices:
        return (("all", 0, int(feature_dim)),)
    for name, start, stop in modality_slices:
        if not 0 <= start < stop <= feature_dim:
            raise ValueError(
                f"modality_slices entry ({name!r}, {start}, {stop}) must satisfy "
                f"0 <= start < stop <= feature_dim={feature_dim}. Pass the slices returned by "
                "prepare_item_features.")
    return tuple((str(n), int(a), int(b)) for n, a, b in modality_slices)


def lightgcn_layers(x, graph, n_layers):
    """Mean of [x, P x, ..., P^L x] with P = D^-1/2 A D^-1/2 (LightGCN's layer combination)."""
    total, h = x, x
    for _ in range(n_layers):
        h = graph_lib.sym_propagate(h, graph)
        total = total + h
    return total / (n_layers + 1)


# ---- VBPR ---------------------------------------------------------------------------------------

def make_vbpr(*, n_users, n_items, feature_dim, modality_slices=None, id_dim=32, content_dim=32):
    """VBPR (He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback",
    AAAI 2016), with all modalities' features as the "visual" content.

    Score = gamma_u . gamma_i + theta_u . (E f_i) + beta_i + beta' . f_i; the user and global
    biases cancel under BPR and are dropped. Written as one dot product:
    item = [gamma_i ; E f_i ; beta_i + beta' . f_i], user = [gamma_u ; theta_u ; 1].

    Returns:
        Recommender with H = id_dim + content_dim + 1.
    """
    del modality_slices
    check_sizes(n_users=n_users, n_items=n_items, feature_dim=feature_dim, id_dim=id_dim,
                 content_dim=content_dim)

    def init(key):
        ks = jax.random.split(key, 5)
        return {
            "gamma_user": layers.dense_init(ks[0], n_users, id_dim),
            "theta_user": layers.dense_init(ks[1], n_users, content_dim),
            "gamma_item": layers.dense_init(ks[2], n_items, id_dim),
            "E": layers.dense_init(ks[3], feature_dim, content_dim),
            "beta_content": layers.dense_init(ks[4], feature_dim, 1),
            "beta_item": jnp.zeros((n_items, 1), jnp.float32),
        }

    def embed(params, inputs, key, train):
        del key, train
        feat = inputs["features"]
        bias = params["beta_item"] + feat @ params["beta_content"]
        items = jnp.concatenate([params["gamma_item"], feat @ params["E"], bias], axis=1)
        ones = jnp.ones((n_users, 1), jnp.float32)
        users = jnp.concatenate([params["gamma_user"], params["theta_user"], ones], axis=1)
        return users, items

    return Recommender(init, embed)


# ---- LightGCN -----------------------------------------------------------------------------------

def make_lightgcn(*, n_users, n_items, feature_dim=None, modality_slices=None, dim=64,
                  n_layers=3):
    """LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation", SIGIR 2020): id embeddings only, `n_layers` parameter-free propagations
    D^-1/2 A D^-1/2 over the user-item graph, final embedding = mean of the layer embeddings.

    Needs inputs["graph"]. Returns a Recommender with H = dim.
    """
    del feature_dim, modality_slices
    check_sizes(n_users=n_users, n_items=n_items, dim=dim)

    def init(key):
        return {"emb": layers.dense_init(key, n_users + n_items, dim)}

    def embed(params, inputs, key, train):
        del key, train
        out = lightgcn_layers(params["emb"], inputs["graph"], n_layers)
        return out[:n_users], out[n_users:]

    return Recommender(init, embed)
