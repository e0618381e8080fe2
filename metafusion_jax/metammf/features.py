"""Item features for MetaMMF: optional per-modality PCA, then one concatenated matrix.

The reference's runnable configuration (spec section 2.3, "v0530") reduced every modality with PCA
fitted on all items (visual -> 64, acoustic -> 64, text -> 32) before concatenating; the later
configuration feeds the raw concatenation. Both are one call here.
"""
import numpy as np

from metafusion_jax.data.pca import pca_scores


def pca_reduce(x, dim):
    """Projects rows onto their top `dim` principal components fitted on all rows.

    The package's one PCA (`metafusion_jax.data.pca`): centred, exact, float64, with sklearn's
    sign convention (the largest-magnitude loading of every component is positive).

    Args:
        x: float [I, D].
        dim: number of components, 1 <= dim <= min(I, D).

    Returns:
        float32 [I, dim].
    """
    return pca_scores(x, dim)


def prepare_item_features(features, pca_dims=None):
    """Concatenates item modalities into one matrix, optionally PCA-reducing each first.

    Args:
        features: modality name -> float [I, D_k]; dict order is the modality order.
        pca_dims: optional modality name -> number of PCA components. Modalities not named keep
            their raw features. None keeps every modality raw.

    Returns:
        (float32 [I, F], modality_slices) where modality_slices is a tuple of
        (name, start, stop) giving each modality's columns in the concatenation.

    Raises:
        ValueError: on an empty dict, a non-2-D modality, modalities with different item counts,
            a PCA entry naming an unknown modality, or a PCA dim outside [1, min(I, D_k)].
    """
    if not features:
        raise ValueError(
            "features must hold at least one modality (name -> [I, D_k] array), got an empty "
            "dict. Load item features before building the model.")
    pca_dims = dict(pca_dims or {})
    unknown = sorted(set(pca_dims) - set(features))
    if unknown:
        raise ValueError(
            f"pca_dims names modalities {unknown} that are not in features "
            f"{list(features)}. Use the feature dict's modality names.")
    n_items = None
    blocks, slices, start = [], [], 0
    for name, x in features.items():
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(
                f"features[{name!r}] must be 2-D [I, D_k], got shape {x.shape}. "
                "Reshape each modality to one row per item.")
        if n_items is None:
            n_items = x.shape[0]
        elif x.shape[0] != n_items:
            raise ValueError(
                f"features[{name!r}] has {x.shape[0]} rows, expected I={n_items} like the "
                "first modality. Every modality needs one row per item, in item-id order.")
        if name in pca_dims:
            dim = int(pca_dims[name])
            if not 1 <= dim <= x.shape[1] or dim > n_items:
                raise ValueError(
                    f"pca_dims[{name!r}] must lie in [1, min(D_k={x.shape[1]}, I={n_items})], "
                    f"got {dim}. Lower the PCA dim or drop the PCA for this modality.")
            x = pca_reduce(x, dim)
        x = x.astype(np.float32)
        blocks.append(x)
        slices.append((name, start, start + x.shape[1]))
        start += x.shape[1]
    return np.concatenate(blocks, axis=1), tuple(slices)
