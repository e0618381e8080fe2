"""BPR ranking loss (Rendle et al., UAI 2009) and an L2 helper.

The reference computes -log(sigmoid(d) + 1e-10); here the stable `jax.nn.log_sigmoid` is used
(spec section 8.3), which agrees where the reference is finite and does not saturate at -23.
"""
import jax
import jax.numpy as jnp


def bpr_loss(user_emb, item_emb, users, pos, neg, weight):
    """Weighted BPR loss over a padded batch.

    Row b contributes mean_k -log_sigmoid(<e_u, e_pos> - <e_u, e_neg_k>); rows are averaged with
    `weight` (0 on padding rows), so padded batches give the loss of their valid rows.

    Args:
        user_emb: float32 [U, H].
        item_emb: float32 [I, H].
        users: int32 [B].
        pos: int32 [B] positive items.
        neg: int32 [B, k] negative items.
        weight: float32 [B], 0 for padding rows.

    Returns:
        float32 scalar (0 if every weight is 0).
    """
    e_u = user_emb[users]                                       # [B, H]
    s_pos = jnp.sum(e_u * item_emb[pos], axis=-1)               # [B]
    s_neg = jnp.einsum("bh,bkh->bk", e_u, item_emb[neg])        # [B, k]
    per_row = -jnp.mean(jax.nn.log_sigmoid(s_pos[:, None] - s_neg), axis=-1)
    total = jnp.sum(weight)
    return jnp.sum(weight * per_row) / jnp.maximum(total, 1e-12)


def l2_penalty(tree):
    """Sum of squares over every leaf of a pytree (scalar float32)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return sum(jnp.sum(jnp.square(x)) for x in leaves)
