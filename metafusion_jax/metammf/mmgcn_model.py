"""MMGCN (Wei et al., "MMGCN: Multi-modal Graph Convolution Network for Personalized
Recommendation of Micro-video", ACM MM 2019).

Equations (spec ../shared/specs/baselines.md section 4). Nodes 0..U-1 are users and U..U+I-1
items; M = D^-1 A is the mean over a node's train neighbours (0 for a node without edges). Per
modality k, with its features X_k [I, D_k]:

    0. c_k = `mlp_dim` and X̃_k = X_k W_0 + b_0 if D_k > mlp_dim (MMRec: the 4096-d image), else
       c_k = D_k and X̃_k = X_k (MMRec: the 384-d text); P_k [U, c_k] the users' preferences
    1. X^0 = L2-row-normalise([P_k; X̃_k])                                    [U + I, c_k]
    for l = 1..L (`n_layers`, the code hard-wires 3), widths c_1 = c_k, c_l = d for l > 1:
    2. h = LReLU(M X^{l-1} Wc_l)                    aggregation, Wc_l [c_l, c_l], no bias
    3. x̂ = LReLU(X^{l-1} Wl_l + bl_l) + E_id      Wl_l [c_l, d], E_id [U + I, d] shared by all
    4. concat:      X^l = LReLU([h ‖ x̂] Wg_l + bg_l)          Wg_l [c_l + d, d]    (the code)
       element-wise: X^l = LReLU(h Wg_l + x̂)                   Wg_l [c_l, d]
    5. Rep = Σ_k X^L_k (the paper sums; the code averages), score = Rep_u · Rep_{U+i}
    LReLU slope 0.01.

Simplifications and choices, against the paper and the spec (MMRec's code):
- P_k and E_id are trained, as the paper means them to be; MMRec's code never updates them
  (plain tensors, not registered parameters).
- Modality representations are summed (paper), not averaged (code): the same ranking at the
  same parameters, but scores K² times larger, which changes the BPR training dynamics.
- Init: all weights Xavier-uniform (the code: Xavier-normal for Wc, Wl, Wg_1, torch default for
  the rest) and all biases 0.
- Loss: the trainer's BPR with the protocol's Adam weight decay; MMRec's reg term acts only on
  its frozen tables (no gradient effect) and is dropped. Our sampler and early stopping.
- Scores at evaluation come from a fresh forward pass (the code reuses the last training
  forward's representation).
"""
import jax
import jax.numpy as jnp

from metafusion_jax.metammf import baselines
from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import item_knn
from metafusion_jax.metammf import layers
from metafusion_jax.metammf.layers import Recommender


def mmgcn_layer_init(key, c_in, dim, concat):
    """One MMGCN layer: {"Wc": [c, c], "Wl": [c, d], "bl": [d], "Wg": [c + d, d] or [c, d],
    "bg": [d] (concat only)}."""
    k_c, k_l, k_g = jax.random.split(key, 3)
    params = {"Wc": layers.dense_init(k_c, c_in, c_in),
              "Wl": layers.dense_init(k_l, c_in, dim),
              "bl": jnp.zeros((dim,), jnp.float32),
              "Wg": layers.dense_init(k_g, c_in + dim if concat else c_in, dim)}
    if concat:
        params["bg"] = jnp.zeros((dim,), jnp.float32)
    return params


def mmgcn_layer(params, x, id_emb, graph):
    """Aggregation + combination (steps 2-4): x [N, c] -> [N, d]; concat iff "bg" in params."""
    h = layers.leaky_relu(graph_lib.mean_neighbours(x @ params["Wc"], graph))
    x_hat = layers.leaky_relu(x @ params["Wl"] + params["bl"][None, :]) + id_emb
    if "bg" in params:
        combined = jnp.concatenate([h, x_hat], axis=1) @ params["Wg"] + params["bg"][None, :]
        return layers.leaky_relu(combined)
    return layers.leaky_relu(h @ params["Wg"] + x_hat)


def make_mmgcn(*, n_users, n_items, feature_dim, modality_slices=None, dim=64, n_layers=3,
               mlp_dim=256, concat=True):
    """MMGCN (module docstring: equations, simplifications).

    Args:
        n_users: U.
        n_items: I.
        feature_dim: F, width of inputs["features"].
        modality_slices: ((name, start, stop), ...) per modality; None = one block.
        dim: d, width of the id embedding and of every layer after the first.
        n_layers: L graph layers per modality (the code: 3).
        mlp_dim: modalities wider than this go through the MLP D_k -> mlp_dim first.
        concat: combination by concatenation (the code) or element-wise.

    Returns:
        Recommender with H = dim; needs inputs["graph"].

    Raises:
        ValueError: on bad slices or sizes < 1.
    """
    slices = baselines.check_slices(modality_slices, feature_dim)
    baselines.check_sizes(n_users=n_users, n_items=n_items, dim=dim, n_layers=n_layers,
                          mlp_dim=mlp_dim)
    if not isinstance(concat, bool):
        raise ValueError(f"make_mmgcn: concat must be True (concatenation) or False "
                         f"(element-wise), got {concat!r}.")
    widths = {name: (mlp_dim if b - a > mlp_dim else b - a) for name, a, b in slices}

    def init(key):
        k_id, k_mod = jax.random.split(key)
        params = {"id": layers.dense_init(k_id, n_users + n_items, dim), "modalities": {}}
        for (name, a, b), kk in zip(slices, jax.random.split(k_mod, len(slices))):
            k_p, k_m, k_l = jax.random.split(kk, 3)
            c = widths[name]
            p = {"pref": layers.dense_init(k_p, n_users, c),
                 "layers": [mmgcn_layer_init(kl, c if n == 0 else dim, dim, concat)
                            for n, kl in enumerate(jax.random.split(k_l, n_layers))]}
            if c != b - a:
                p["mlp"] = {"W": layers.dense_init(k_m, b - a, c),
                            "b": jnp.zeros((c,), jnp.float32)}
            params["modalities"][name] = p
        return params

    def tower(p, feat, id_emb, graph):
        """One modality: steps 0-4, [U + I, d]."""
        items = feat
        if "mlp" in p:
            items = feat @ p["mlp"]["W"] + p["mlp"]["b"][None, :]
        x = item_knn.unit_rows(jnp.concatenate([p["pref"], items], axis=0))
        for layer in p["layers"]:
            x = mmgcn_layer(layer, x, id_emb, graph)
        return x

    def embed(params, inputs, key, train):
        del key, train
        feat, graph = inputs["features"], inputs["graph"]
        rep = sum(tower(params["modalities"][name], feat[:, a:b], params["id"], graph)
                  for name, a, b in slices)
        return rep[:n_users], rep[n_users:]

    return Recommender(init, embed)
