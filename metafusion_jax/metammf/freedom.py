"""FREEDOM (Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM MM 2023).

Equations (spec ../shared/specs/baselines.md section 3; k = `knn_k`, ε = 1e-7, ρ = `dropout`):

    frozen item graph (once, from the raw features; `prepare_inputs`)
      1. N_k(i) = top-k of row i of cos(X_k), i itself included
      2. S_k[i, j] = 1 / (k + ε) for j in N_k(i)  (rnorm of the 0/1 kNN graph: a kNN mean)
      3. S = Σ_k w_k S_k, w = `modality_weights` (default uniform)
    user-item graph, E train edges e = (u, i), degrees d from the full train set
      Â = D^-1/2 A D^-1/2 with D = degree + ε, no self loops            (evaluation, ρ <= 0)
    degree-sensitive pruning (train=True and ρ > 0, a fresh draw at every step)
      4. p_e ∝ 1 / sqrt((d_u + ε)(d_i + ε))
      5. keep m = floor(E (1 - ρ)) distinct edges drawn without replacement in proportion to p_e
         (Gumbel-top-m on log p_e, key = the embed key)
      6. Â_ρ: the kept edges renormalised, 1 / sqrt((d'_u + ε)(d'_i + ε)), d' counted on them,
         applied in both directions (symmetric)
    forward
      7. H = S^{n_mm_layers} E_i                    (not normalised, unlike LATTICE)
      8. [Z_u; Z_i] = mean(E_0..E_L), E_l = Â_ρ E_{l-1} (Â at evaluation), L = n_layers
      9. z_u = Z_u, z̃_i = Z_i + H_i, score = z_u · z̃_i

Simplifications, against the paper and the spec (MMRec's code = the official code):
- Loss: the trainer's BPR on the scores only. FREEDOM's second term λ Σ_k BPR(z_u, F_k[i⁺],
  F_k[i⁻]) with F_k = X_k W_k + b_k is left out, which is the λ = 0 member of MMRec's grid
  (λ ∈ {0, 1e-5, 1e-4, 1e-3}); so X_k, W_k, b_k are not parameters here. The protocol's Adam
  weight decay replaces "no L2 term".
- Pruning is redrawn at every training step (from the step key), not once per epoch.
- The modality weights are an option (default 1/K each) rather than the code's fixed
  mm_image_weight = 0.1 on the image graph (our data has no image/text pair); the paper learns
  them.
- Our sampler, batch size, validation and early stopping (the trainer's protocol).
"""
import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.metammf import baselines
from metafusion_jax.metammf import item_knn
from metafusion_jax.metammf import layers
from metafusion_jax.metammf.layers import Recommender

EPS = 1e-7


def user_item_edges(graph, n_users):
    """The E undirected train edges (users int32 [E], items int32 [E]) of a bipartite `Graph`.

    Works on host and traced arrays: the user -> item half of the 2E directed edges, found by a
    stable argsort (E = E2 / 2 is static).
    """
    src, dst = graph.src, graph.dst
    n_edges = src.shape[0] // 2
    xp = np if isinstance(src, np.ndarray) else jnp
    order = xp.argsort(src >= n_users, stable=True)[:n_edges]
    return src[order].astype(xp.int32), (dst[order] - n_users).astype(xp.int32)


def edge_norm(users, items, keep, n_users, n_items):
    """keep_e / sqrt((d'_u + ε)(d'_i + ε)) with d' counted over the kept edges: float32 [E]."""
    d_u = jax.ops.segment_sum(keep, users, num_segments=n_users)
    d_i = jax.ops.segment_sum(keep, items, num_segments=n_items)
    return keep * jax.lax.rsqrt((d_u[users] + EPS) * (d_i[items] + EPS))


def prune_mask(key, users, items, n_users, n_items, rho):
    """Degree-sensitive pruning: float32 [E] 0/1, m = floor(E (1 - ρ)) ones drawn without
    replacement in proportion to p_e = 1 / sqrt((d_u + ε)(d_i + ε)) (Gumbel-top-m)."""
    n_edges = users.shape[0]
    m = int(np.floor(n_edges * (1.0 - rho)))
    ones = jnp.ones((n_edges,), jnp.float32)
    d_u = jax.ops.segment_sum(ones, users, num_segments=n_users)
    d_i = jax.ops.segment_sum(ones, items, num_segments=n_items)
    score = -0.5 * jnp.log((d_u[users] + EPS) * (d_i[items] + EPS))
    score = score + jax.random.gumbel(key, (n_edges,), jnp.float32)
    if m <= 0:
        return jnp.zeros((n_edges,), jnp.float32)
    _, kept = jax.lax.top_k(score, m)
    return jnp.zeros((n_edges,), jnp.float32).at[kept].set(1.0)


def edge_propagate(x, users, items, norm, n_users):
    """One symmetric propagation over weighted undirected edges: [U + I, H] -> [U + I, H]."""
    x_u, x_i = x[:n_users], x[n_users:]
    to_u = jax.ops.segment_sum(norm[:, None] * x_i[items], users, num_segments=n_users)
    to_i = jax.ops.segment_sum(norm[:, None] * x_u[users], items, num_segments=x_i.shape[0])
    return jnp.concatenate([to_u, to_i], axis=0)


def _weights(modality_weights, slices):
    names = [n for n, _, _ in slices]
    if not modality_weights:
        return np.full(len(names), 1.0 / len(names))
    given = dict(modality_weights)
    if sorted(given) != sorted(names) or any(float(v) < 0 for v in given.values()) \
            or sum(float(v) for v in given.values()) <= 0:
        raise ValueError(
            f"make_freedom: modality_weights must give one weight >= 0 (not all 0) to each "
            f"modality {names}, got {tuple(modality_weights)!r}. Pass e.g. "
            f"{tuple((n, 1.0) for n in names)!r} or () for uniform weights.")
    w = np.array([float(given[n]) for n in names])
    return w / w.sum()


def make_freedom(*, n_users, n_items, feature_dim, modality_slices=None, dim=64, n_layers=2,
                 n_mm_layers=1, knn_k=10, dropout=0.8, modality_weights=()):
    """FREEDOM (module docstring: equations, simplifications).

    Args:
        n_users: U.
        n_items: I.
        feature_dim: F, width of inputs["features"].
        modality_slices: ((name, start, stop), ...) per modality; None = one block.
        dim: d, id embedding width.
        n_layers: user-item propagations (`n_ui_layers` = 2).
        n_mm_layers: item-item propagations over the frozen S (1).
        knn_k: k of the frozen kNN graph (capped at I).
        dropout: ρ in [0, 1), the fraction of train edges pruned at each training step;
            <= 0 trains on the full graph.
        modality_weights: ((modality, weight), ...) of S = Σ_k w_k S_k, normalised to sum 1;
            () = 1/K each.

    Returns:
        Recommender with H = dim; `prepare_inputs` gives "freedom_knn_idx" int32 [K, I, k] and
        the train edges "freedom_users" / "freedom_items" int32 [E]; without them embed computes
        both in jit.

    Raises:
        ValueError: on bad slices, sizes < 1, ρ >= 1 or bad modality weights.
    """
    slices = baselines.check_slices(modality_slices, feature_dim)
    baselines.check_sizes(n_users=n_users, n_items=n_items, dim=dim, n_layers=n_layers,
                          n_mm_layers=n_mm_layers)
    k = item_knn.check_k(knn_k, n_items, "make_freedom")
    rho = float(dropout)
    if not rho < 1.0:
        raise ValueError(f"make_freedom: dropout (the fraction of user-item edges pruned per "
                         f"step) must be < 1, got {dropout}. The paper uses 0.8 or 0.9.")
    mod_w = jnp.asarray(_weights(modality_weights, slices), jnp.float32)

    def init(key):
        k_u, k_i = jax.random.split(key)
        return {"user": layers.dense_init(k_u, n_users, dim),
                "item": layers.dense_init(k_i, n_items, dim)}

    def item_graph(inputs):
        """S as (idx [K, I, k], w [K, I, k]): w = w_k / (k + ε)."""
        if "freedom_knn_idx" in inputs:
            idx = inputs["freedom_knn_idx"]
        else:
            idx = item_knn.traced_topk(inputs["features"], slices, k)[1]
        return idx, jnp.broadcast_to(mod_w[:, None, None] / (k + EPS), idx.shape)

    def embed(params, inputs, key, train):
        if "freedom_users" in inputs:
            users, items = inputs["freedom_users"], inputs["freedom_items"]
        else:
            users, items = user_item_edges(inputs["graph"], n_users)
        keep = jnp.ones(users.shape, jnp.float32)
        if train and rho > 0:
            keep = prune_mask(key, users, items, n_users, n_items, rho)
        norm = edge_norm(users, items, keep, n_users, n_items)
        x = jnp.concatenate([params["user"], params["item"]], axis=0)
        total = x
        for _ in range(n_layers):
            x = edge_propagate(x, users, items, norm, n_users)
            total = total + x
        z = total / (n_layers + 1)
        idx, w = item_graph(inputs)
        h = params["item"]
        for _ in range(n_mm_layers):
            h = sum(item_knn.propagate(idx[m], w[m], h) for m in range(idx.shape[0]))
        return z[:n_users], z[n_users:] + h

    def prepare_inputs(features, modality_slices, graph):
        del modality_slices  # the factory's slices
        users, items = user_item_edges(jax.tree.map(np.asarray, graph), n_users)
        return {"freedom_knn_idx": item_knn.host_topk(features, slices, k)[1],
                "freedom_users": users, "freedom_items": items}

    return Recommender(init, embed, prepare_inputs)
