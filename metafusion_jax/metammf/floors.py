"""Popularity and random rankings: the floors every table needs, as models the trainer runs.

Neither learns: each has one dummy scalar parameter that enters its embeddings times 0, so the
trainer's loop (BPR steps, Adam, checkpoints, validation, test) runs unchanged, its gradients
are exactly 0 and Adam's updates are exactly 0 (also with weight decay: the dummy stays 0). One
epoch is enough (the table runs them with `--config.num_epochs=1 --config.eval_every=1`).

- `popularity`: score(u, i) = number of train interactions of item i, the same for every user
  (ties are broken by the ranking code, as for any model). Train items are masked as for every
  model, so it ranks the most popular unseen items.
- `random`: score(u, i) = g_u · g_i with g_u, g_i i.i.d. N(0, 1) vectors of width `dim` drawn
  from `jax.random.key(seed)`. For a fixed user the item scores are i.i.d., so each user's
  ranking is a uniformly random permutation, independent of the data (across users the scores
  are correlated through the shared g_i, which does not matter for per-user metrics). The
  expected Recall@K is about K / (number of unseen items).
"""
import jax
import jax.numpy as jnp

from metafusion_jax.metammf import baselines
from metafusion_jax.metammf.layers import Recommender


def _dummy_init(key):
    del key
    return {"dummy": jnp.zeros((), jnp.float32)}


def item_train_counts(graph, n_users):
    """Train interactions per item from the bipartite `Graph`: float32 [I] (its in-degrees)."""
    inv_deg = graph.inv_deg[n_users:]
    return jnp.where(inv_deg > 0, jnp.round(1.0 / jnp.maximum(inv_deg, 1e-30)), 0.0)


def make_popularity(*, n_users, n_items, feature_dim=None, modality_slices=None):
    """Most-popular ranking (module docstring). Needs inputs["graph"].

    Returns:
        Recommender with H = 1: user_emb = 1 [U, 1], item_emb = train counts [I, 1].
    """
    del feature_dim, modality_slices
    baselines.check_sizes(n_users=n_users, n_items=n_items)

    def embed(params, inputs, key, train):
        del key, train
        zero = 0.0 * params["dummy"]
        counts = item_train_counts(inputs["graph"], n_users)
        return jnp.ones((n_users, 1), jnp.float32) + zero, counts[:, None] + zero

    return Recommender(_dummy_init, embed)


def make_random(*, n_users, n_items, feature_dim=None, modality_slices=None, dim=64, seed=0):
    """Random ranking from a fixed key (module docstring).

    Args:
        n_users: U.
        n_items: I.
        feature_dim: unused.
        modality_slices: unused.
        dim: width of the random vectors.
        seed: the key's seed; the table sets it to the run's seed.

    Returns:
        Recommender with H = dim; the same scores at every call (train or not).
    """
    del feature_dim, modality_slices
    baselines.check_sizes(n_users=n_users, n_items=n_items, dim=dim)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"make_random: seed must be an int, got {seed!r}.")

    def embed(params, inputs, key, train):
        del inputs, key, train
        k_u, k_i = jax.random.split(jax.random.key(seed))
        zero = 0.0 * params["dummy"]
        return (jax.random.normal(k_u, (n_users, dim), jnp.float32) + zero,
                jax.random.normal(k_i, (n_items, dim), jnp.float32) + zero)

    return Recommender(_dummy_init, embed)
