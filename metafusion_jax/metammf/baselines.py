"""Baselines for MetaMMF's comparison, in the same `Recommender` interface and BPR protocol.

Each factory takes keyword arguments `n_users, n_items, feature_dim, modality_slices` (ignoring
what it does not use) plus its own sizes, which `models.MODELS` lists as the options of its
`config.model.<name>` sub-config. The static-fusion MLP lives in `models.py`
(`make_static_mlp`) because it is MetaMMF with W_i = M.
"""
import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import layers
from metafusion_jax.metammf.layers import Recommender


def _check_sizes(**sizes):
    for name, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")


def _slices(modality_slices, feature_dim):
    if not modality_slices:
        return (("all", 0, int(feature_dim)),)
    for name, start, stop in modality_slices:
        if not 0 <= start < stop <= feature_dim:
            raise ValueError(
                f"modality_slices entry ({name!r}, {start}, {stop}) must satisfy "
                f"0 <= start < stop <= feature_dim={feature_dim}. Pass the slices returned by "
                "prepare_item_features.")
    return tuple((str(n), int(a), int(b)) for n, a, b in modality_slices)


def _lightgcn_layers(x, graph, n_layers):
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
    _check_sizes(n_users=n_users, n_items=n_items, feature_dim=feature_dim, id_dim=id_dim,
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
    _check_sizes(n_users=n_users, n_items=n_items, dim=dim)

    def init(key):
        return {"emb": layers.dense_init(key, n_users + n_items, dim)}

    def embed(params, inputs, key, train):
        del key, train
        out = _lightgcn_layers(params["emb"], inputs["graph"], n_layers)
        return out[:n_users], out[n_users:]

    return Recommender(init, embed)


# ---- MMGCN --------------------------------------------------------------------------------------

def make_mmgcn(*, n_users, n_items, feature_dim, modality_slices=None, dim=64, n_layers=2):
    """MMGCN (Wei et al., "MMGCN: Multi-modal Graph Convolution Network for Personalized
    Recommendation of Micro-video", ACM MM 2019), simplified.

    Per modality m: node features x^m = [p_u^m ; leaky_relu(f_i^m W_m)] with p^m the user's
    modality-specific preference embedding, row-L2-normalised; each of `n_layers` layers runs
    h = leaky_relu(GraphSAGE-mean(x^m)) then combines it with the shared id embedding,
    x^m <- h + e_id. Representations are summed across modalities.
    Simplified against the paper: GraphSAGE mean aggregation (neighbour and self projections)
    stands in for MMGCN's separate aggregation and concat-combination layers, and the id
    embedding is added rather than projected-and-concatenated.

    Needs inputs["graph"]. Returns a Recommender with H = dim.
    """
    slices = _slices(modality_slices, feature_dim)
    _check_sizes(n_users=n_users, n_items=n_items, dim=dim, n_layers=n_layers)

    def init(key):
        k_id, k_mod = jax.random.split(key)
        params = {"id": layers.dense_init(k_id, n_users + n_items, dim), "modalities": {}}
        for (name, start, stop), k in zip(slices, jax.random.split(k_mod, len(slices))):
            kp, ku, kl = jax.random.split(k, 3)
            params["modalities"][name] = {
                "proj": layers.dense_init(kp, stop - start, dim),
                "user_pref": layers.dense_init(ku, n_users, dim),
                "layers": [graph_lib.sage_init(kk, dim, dim)
                           for kk in jax.random.split(kl, n_layers)],
            }
        return params

    def embed(params, inputs, key, train):
        del key, train
        feat, graph = inputs["features"], inputs["graph"]
        total = jnp.zeros((n_users + n_items, dim), jnp.float32)
        for name, start, stop in slices:
            p = params["modalities"][name]
            items = layers.leaky_relu(feat[:, start:stop] @ p["proj"])
            x = jnp.concatenate([p["user_pref"], items], axis=0)
            x = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            for layer in p["layers"]:
                x = layers.leaky_relu(graph_lib.sage(layer, x, graph)) + params["id"]
            total = total + x
        return total[:n_users], total[n_users:]

    return Recommender(init, embed)


# ---- LATTICE ------------------------------------------------------------------------------------

def _knn_rows(query, keys, k):
    """Top-k cosine neighbours of `query` rows among `keys` rows: ([c, k] sims >= 0, [c, k] idx)."""
    def unit(x):
        return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    vals, idx = jax.lax.top_k(unit(query) @ unit(keys).T, k)
    return jnp.maximum(vals, 0.0), idx.astype(jnp.int32)


def _normalise_knn(vals, idx):
    """D^-1/2 S D^-1/2 on the sparsified similarity S (d = row sums), per edge: [I, k]."""
    deg = vals.sum(axis=1)
    inv_sqrt = jnp.where(deg > 0, 1.0 / jnp.sqrt(jnp.maximum(deg, 1e-12)), 0.0)
    return vals * inv_sqrt[:, None] * inv_sqrt[idx]


def lattice_knn(features, modality_slices, k=10, chunk=1024):
    """Precomputes LATTICE's per-modality item-item kNN graphs on the host, in row chunks.

    Args:
        features: float32 [I, F] concatenated features.
        modality_slices: (name, start, stop) per modality (None: one block of all columns).
        k: neighbours per item (the item itself counts, as in the paper's top-k sparsification).
        chunk: rows per similarity block (memory [chunk, I]).

    Returns:
        {"knn_idx": int32 [K, I, k], "knn_w": float32 [K, I, k]}; add to the embed inputs.
    """
    features = jnp.asarray(features, jnp.float32)
    slices = _slices(modality_slices, features.shape[1])
    k = min(int(k), features.shape[0])
    rows = jax.jit(_knn_rows, static_argnums=2)
    idx_all, w_all = [], []
    for _, start, stop in slices:
        block = features[:, start:stop]
        parts = [rows(block[a:a + chunk], block, k) for a in range(0, block.shape[0], chunk)]
        vals = jnp.concatenate([p[0] for p in parts])
        idx = jnp.concatenate([p[1] for p in parts])
        idx_all.append(np.asarray(idx))
        w_all.append(np.asarray(_normalise_knn(vals, idx)))
    return {"knn_idx": np.stack(idx_all), "knn_w": np.stack(w_all).astype(np.float32)}


def make_lattice(*, n_users, n_items, feature_dim, modality_slices=None, dim=64, n_layers=2,
                 n_item_layers=1, knn_k=10):
    """LATTICE (Zhang et al., "Mining Latent Structures for Multimedia Recommendation",
    ACM MM 2021), with frozen item-item graphs.

    Per modality a kNN graph (top-`knn_k` cosine similarities of the item features, symmetric
    normalised) is combined with softmax-learned modality weights; `n_item_layers` LightGCN-style
    propagations of the item id embeddings over it give h, and the final item embedding is the
    LightGCN (user-item graph, `n_layers`) item embedding + L2-normalised h.
    Simplified against the paper: the graphs are the initial feature kNN graphs kept fixed (as
    FREEDOM, Zhou & Shen MM 2023, found works as well); the learned graph-structure update from
    transformed features is left out.

    inputs needs "graph" and, ideally, the arrays of `prepare_inputs` (`lattice_knn`: "knn_idx",
    "knn_w") computed once on the host; without them embed recomputes the kNN inside jit (correct
    but costs an [I, I] similarity per modality per call).

    Returns:
        Recommender with H = dim.
    """
    slices = _slices(modality_slices, feature_dim)
    _check_sizes(n_users=n_users, n_items=n_items, dim=dim, knn_k=knn_k)
    k = min(int(knn_k), n_items)

    def init(key):
        return {"emb": layers.dense_init(key, n_users + n_items, dim),
                "modality_logits": jnp.zeros((len(slices),), jnp.float32)}

    def knn(inputs):
        if "knn_idx" in inputs:
            return inputs["knn_idx"], inputs["knn_w"]
        feat = jax.lax.stop_gradient(inputs["features"])
        idx_all, w_all = [], []
        for _, start, stop in slices:
            vals, idx = _knn_rows(feat[:, start:stop], feat[:, start:stop], k)
            idx_all.append(idx)
            w_all.append(_normalise_knn(vals, idx))
        return jnp.stack(idx_all), jnp.stack(w_all)

    def embed(params, inputs, key, train):
        del key, train
        idx, w = knn(inputs)                                   # [K, I, k]
        out = _lightgcn_layers(params["emb"], inputs["graph"], n_layers)
        mod_w = jax.nn.softmax(params["modality_logits"])       # [K]
        edge_w = w * mod_w[:, None, None]
        h = params["emb"][n_users:]
        for _ in range(n_item_layers):
            h = jnp.einsum("mij,mijh->ih", edge_w, h[idx])
        h = h / jnp.maximum(jnp.linalg.norm(h, axis=1, keepdims=True), 1e-12)
        return out[:n_users], out[n_users:] + h

    def prepare_inputs(features, modality_slices, graph):
        del graph
        return lattice_knn(features, modality_slices, k=k)

    return Recommender(init, embed, prepare_inputs)
