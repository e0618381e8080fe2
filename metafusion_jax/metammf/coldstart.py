"""Cold-start evaluation: rank held-out items from their content alone.

`interactions.cold_item_split` holds out a fraction of the items with all their interactions;
training never sees them (no train pair, never a BPR negative: `make_bpr_sampler(...,
exclude_items=...)`). At evaluation their item-id parameters are zeroed (`zero_item_ids`), so a
content model ranks them from its fusion of their features only, and each user who interacted
with a cold item ranks the cold items among themselves (`cold_metrics`).

`ITEM_ID_PARAMS` is the one explicit model name -> item-id parameter table; a model without an
entry (e.g. LightGCN, pure id embeddings) cannot rank unseen items and is refused up front.
"""
import jax.numpy as jnp
import numpy as np

from metafusion_jax.metrics import ranking

# model name (metammf.models.MODELS) -> params keys of its per-item id tables [I, ...], whose
# cold rows are zeroed at evaluation. Popularity has no per-item parameter a cold item could use
# (its score is the train count, 0 for every cold item: ties, broken towards low ids); random
# scores every item from a fixed key: both are the floors a content model must beat.
ITEM_ID_PARAMS = {
    "metammf": ("item_id",),
    "static_mlp": ("item_id",),
    "vbpr": ("gamma_item", "beta_item"),
    "popularity": (),
    "random": (),
}
KS = (10, 20)


def check_model(name):
    """Raises ValueError unless model `name` can rank cold items (has an ITEM_ID_PARAMS entry)."""
    if name not in ITEM_ID_PARAMS:
        raise ValueError(
            f"config.data.cold_items > 0 needs a model that ranks items from their content; "
            f"model {name!r} is not one of {sorted(ITEM_ID_PARAMS)} (metammf/coldstart.py "
            "ITEM_ID_PARAMS). Set config.data.cold_items=0.0 or pick a listed model.")


def zero_item_ids(params, model_name, cold_items):
    """`params` with the rows of `cold_items` zeroed in the model's item-id tables.

    Args:
        params: the model's params dict (not modified).
        model_name: a key of ITEM_ID_PARAMS.
        cold_items: int [I_c] item ids.

    Returns:
        A new params dict (other leaves shared).
    """
    check_model(model_name)
    cold = jnp.asarray(np.asarray(cold_items, np.int32))
    out = dict(params)
    for key in ITEM_ID_PARAMS[model_name]:
        out[key] = params[key].at[cold].set(0.0)
    return out


def cold_ks(n_cold, ks=KS):
    """The cut-offs that fit among n_cold candidates (ks above n_cold are dropped)."""
    fitting = tuple(k for k in ks if k <= n_cold)
    if not fitting:
        raise ValueError(
            f"only {n_cold} cold items: fewer than the smallest cut-off {min(ks)}. Raise "
            "config.data.cold_items or use more items.")
    return fitting


def cold_metrics(user_emb, item_emb, cold_items, cold_pairs, ks=KS, chunk_size=1024):
    """Ranking metrics of the cold items among themselves, for users who interacted with one.

    Args:
        user_emb: float [U, H].
        item_emb: float [I, H] (cold rows computed with zeroed id parameters).
        cold_items: int [I_c] sorted item ids: the only candidates.
        cold_pairs: int [E_c, 2] (user, item) pairs whose items are cold: the relevant items.
        ks: cut-offs; those above I_c are dropped (`cold_ks`).
        chunk_size: users scored at once.

    Returns:
        dict: recall@K, ndcg@K, precision@K, hr@K, map@K (as `ranking.ranking_metrics`) plus
        n_items (I_c) and n_users (users with at least one cold pair).

    Raises:
        ValueError: a cold pair names an item outside cold_items, or no cut-off fits.
    """
    cold_items = np.asarray(cold_items, np.int64)
    cold_pairs = np.asarray(cold_pairs, np.int64)
    position = np.full(np.asarray(item_emb).shape[0], -1, np.int64)
    position[cold_items] = np.arange(len(cold_items))
    local = position[cold_pairs[:, 1]]
    if (local < 0).any():
        bad = int(cold_pairs[np.argmax(local < 0), 1])
        raise ValueError(f"cold_pairs names item {bad}, which is not in cold_items. Pass the "
                         "pairs and items of one `cold_item_split`.")
    pairs = np.stack([cold_pairs[:, 0], local], axis=1)
    out = ranking.ranking_metrics(
        user_emb, np.asarray(item_emb)[cold_items], np.zeros((0, 2), np.int64), pairs,
        ks=cold_ks(len(cold_items), ks), chunk_size=chunk_size)
    out["n_items"] = int(len(cold_items))
    out["n_users"] = int(len(np.unique(cold_pairs[:, 0])))
    return out


def evaluate_cold(embed_eval, params, inputs, model_name, cold_items, cold_pairs,
                  chunk_size=1024):
    """Cold-start metrics of a trained model: id parameters of cold items zeroed, then ranked.

    Args:
        embed_eval: (params, inputs) -> (user_emb [U, H], item_emb [I, H]), e.g. the trainer's
            jitted `model.embed(..., train=False)`.
        params: the trained params.
        inputs: the model's inputs dict.
        model_name: a key of ITEM_ID_PARAMS.
        cold_items, cold_pairs: from `interactions.cold_item_split`.
        chunk_size: users scored at once.

    Returns:
        dict of `cold_metrics`.
    """
    user_emb, item_emb = embed_eval(zero_item_ids(params, model_name, cold_items), inputs)
    return cold_metrics(user_emb, item_emb, cold_items, cold_pairs, chunk_size=chunk_size)
