"""LATTICE (Zhang et al., "Mining Latent Structures for Multimedia Recommendation", ACM MM 2021).

Equations (spec ../shared/specs/baselines.md section 2; k = `knn_k`, λ = `lambda_coeff`):

    parameters  E_u [U, d], E_i [I, d] (Xavier-uniform), per modality k a trainable feature table
                X_k [I, D_k] initialised from the features, W_k [D_k, d'], b_k [d'], and the
                modality logits a [K] (0.5 each)
    fixed       S0_k = rnorm(topk(cos(X_k at init)))                    (`prepare_inputs`)
                Â_UI = D^-1 (A + I), A the bipartite train graph, D its row sums (random walk
                with self loops, not LightGCN's symmetric normalisation)
    1.  α = softmax(a)
    2.  F_k = X_k W_k + b_k
    3.  Ŝ_k = topk(cos(F_k))                  gradient through the kept values, not the indices
    4.  A_L = rnorm(Σ_k α_k Ŝ_k)              weight and sum first, normalise once (the code)
    5.  A_0 = Σ_k α_k S0_k
    6.  A = (1 - λ) A_L + λ A_0
    7.  H = A^{n_item_layers} E_i
    8.  [Z_u; Z_i] = mean(E_0..E_L), E_l = Â_UI E_{l-1}, E_0 = [E_u; E_i], L = n_layers
    9.  z_u = Z_u, z̃_i = Z_i + H_i / ‖H_i‖₂ (eps 1e-12), score = z_u · z̃_i

Simplifications, against the paper and the spec (MMRec's code):
- The learned graph (steps 1-6) is rebuilt with gradients at every training step (and at every
  evaluation) instead of once per epoch at the first batch and reused as a constant; so the
  PyTorch >= 2 vs 1.5 question of gradients on reuse batches does not arise.
- X_k is stored as a trainable offset ΔX_k (zeros at init) on the raw features: the same
  function and gradients; only the trainer's coupled weight decay pulls X_k towards the raw
  features rather than towards 0.
- Loss: the trainer's BPR with the protocol's Adam weight decay on all parameters, in place of
  LATTICE's reg·½(‖z_u‖² + ‖z̃⁺‖² + ‖z̃⁻‖²)/2048 on the final embeddings; constant learning rate
  (no 0.96^(epoch/50) decay); our sampler, batch size, validation and early stopping.
- cf_model is LightGCN only (no NGCF / MF variants); W_k, b_k use torch's default Linear init.
- topk keeps negative similarities (as the code); a row whose sum is <= 0 normalises to 0.
- S0 is sparse ([K, I, k]) and A is applied as a sum of sparse graphs, never a dense [I, I].
"""
import math

import jax
import jax.numpy as jnp

from metafusion_jax.metammf import baselines
from metafusion_jax.metammf import graph as graph_lib
from metafusion_jax.metammf import item_knn
from metafusion_jax.metammf import layers
from metafusion_jax.metammf.layers import Recommender


def random_walk_propagate(x, graph):
    """Â_UI x with Â_UI = D^-1 (A + I) (D = degree + 1): [N, H] -> [N, H]."""
    inv_deg = graph.inv_deg
    deg = jnp.where(inv_deg > 0, jnp.round(1.0 / jnp.maximum(inv_deg, 1e-30)), 0.0)
    summed = graph_lib.mean_neighbours(x, graph) * deg[:, None]
    return (summed + x) / (deg + 1.0)[:, None]


def make_lattice(*, n_users, n_items, feature_dim, modality_slices=None, dim=64,
                 feat_embed_dim=64, n_layers=2, n_item_layers=1, knn_k=10, lambda_coeff=0.9):
    """LATTICE as the paper and MMRec's code (module docstring: equations, simplifications).

    Args:
        n_users: U.
        n_items: I.
        feature_dim: F, width of inputs["features"].
        modality_slices: ((name, start, stop), ...) per modality; None = one block.
        dim: d, id embedding width.
        feat_embed_dim: d', width of the transformed features F_k.
        n_layers: L, user-item propagations (MMRec: len(weight_size) = 2).
        n_item_layers: item-item propagations of E_i over A (MMRec: n_layers = 1).
        knn_k: k of the topk sparsification (capped at I).
        lambda_coeff: λ in [0, 1], the weight of the initial graph A_0.

    Returns:
        Recommender with H = dim; `prepare_inputs` gives "lattice_s0_idx" / "lattice_s0_w"
        [K, I, k] (S0_k); without them embed computes S0 from inputs["features"] in jit.

    Raises:
        ValueError: on bad slices, sizes < 1, or λ outside [0, 1].
    """
    slices = baselines.check_slices(modality_slices, feature_dim)
    baselines.check_sizes(n_users=n_users, n_items=n_items, dim=dim, feat_embed_dim=feat_embed_dim,
                          n_layers=n_layers, n_item_layers=n_item_layers)
    k = item_knn.check_k(knn_k, n_items, "make_lattice")
    if not 0.0 <= float(lambda_coeff) <= 1.0:
        raise ValueError(f"make_lattice: lambda_coeff (the weight of the initial kNN graph) must "
                         f"lie in [0, 1], got {lambda_coeff}. The paper uses 0.9.")
    lam = float(lambda_coeff)

    def init(key):
        k_u, k_i, k_w = jax.random.split(key, 3)
        params = {"user": layers.dense_init(k_u, n_users, dim),
                  "item": layers.dense_init(k_i, n_items, dim),
                  "modality_logits": jnp.full((len(slices),), 0.5, jnp.float32),
                  "feat_delta": {}, "proj": {}}
        for (name, a, b), kk in zip(slices, jax.random.split(k_w, len(slices))):
            kw, kb = jax.random.split(kk)
            bound = 1.0 / math.sqrt(b - a)  # torch Linear default
            params["feat_delta"][name] = jnp.zeros((n_items, b - a), jnp.float32)
            params["proj"][name] = {
                "W": jax.random.uniform(kw, (b - a, feat_embed_dim), jnp.float32, -bound, bound),
                "b": jax.random.uniform(kb, (feat_embed_dim,), jnp.float32, -bound, bound)}
        return params

    def learned_graph(params, features, alpha):
        """Steps 2-4: (idx [K, I, k], w [K, I, k]) of A_L."""
        vals, idx = [], []
        for name, a, b in slices:
            x = features[:, a:b] + params["feat_delta"][name]
            f = x @ params["proj"][name]["W"] + params["proj"][name]["b"][None, :]
            v, i = item_knn.cosine_topk(f, f, k)
            vals.append(v)
            idx.append(i)
        idx = jnp.stack(idx)
        return idx, item_knn.rnorm(alpha[:, None, None] * jnp.stack(vals), idx)

    def initial_graph(inputs):
        if "lattice_s0_idx" in inputs:
            return inputs["lattice_s0_idx"], inputs["lattice_s0_w"]
        vals, idx = item_knn.traced_topk(inputs["features"], slices, k)
        return idx, jax.vmap(item_knn.rnorm)(vals, idx)

    def item_graph(params, inputs):
        """Steps 1-6: A as K learned and K initial sparse parts, (idx, w) each [2K, I, k]."""
        alpha = jax.nn.softmax(params["modality_logits"])
        idx_l, w_l = learned_graph(params, inputs["features"], alpha)
        idx_0, w_0 = initial_graph(inputs)
        w_0 = alpha[:, None, None] * w_0
        return (jnp.concatenate([idx_l, idx_0]),
                jnp.concatenate([(1.0 - lam) * w_l, lam * w_0]))

    def embed(params, inputs, key, train):
        del key, train
        idx, w = item_graph(params, inputs)
        h = params["item"]
        for _ in range(n_item_layers):
            h = sum(item_knn.propagate(idx[p], w[p], h) for p in range(idx.shape[0]))
        x = jnp.concatenate([params["user"], params["item"]], axis=0)
        total = x
        for _ in range(n_layers):
            x = random_walk_propagate(x, inputs["graph"])
            total = total + x
        z = total / (n_layers + 1)
        return z[:n_users], z[n_users:] + item_knn.unit_rows(h)

    def prepare_inputs(features, modality_slices, graph):
        del modality_slices, graph  # the factory's slices
        vals, idx = item_knn.host_topk(features, slices, k)
        w = jax.vmap(item_knn.rnorm)(jnp.asarray(vals), jnp.asarray(idx))
        return {"lattice_s0_idx": idx, "lattice_s0_w": jax.device_get(w)}

    return Recommender(init, embed, prepare_inputs)
