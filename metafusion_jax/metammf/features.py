"""Item features for MetaMMF: optional per-modality PCA, then one concatenated matrix.

The reference's runnable configuration (spec section 2.3, "v0530") reduced every modality with PCA
fitted on all items (visual -> 64, acoustic -> 64, text -> 32) before concatenating; the later
configuration feeds the raw concatenation. Both are one call here.

The models are initialised for features of scale ~1: `check_feature_scale` warns about a modality
far outside it (such features train to absurd losses and near-random metrics), and
`prepare_item_features(..., standardize=True)` standardises every column first.
"""
import warnings

from absl import logging
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


# Largest |feature| a modality may reach before `check_feature_scale` warns.
MAX_FEATURE_SCALE = 1e3


def standardize_columns(x):
    """Every column centred and scaled to unit standard deviation over the rows (items).

    Constant columns become 0. Statistics in float64.

    Args:
        x: float [I, D].

    Returns:
        float32 [I, D].
    """
    x = np.asarray(x, np.float64)
    std = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def check_feature_scale(feat, modality_slices, source, limit=MAX_FEATURE_SCALE):
    """Warns (absl warning + `UserWarning`) for every modality whose largest |value| > limit.

    Args:
        feat: float [I, F], the features the model sees.
        modality_slices: ((name, start, stop), ...) of `prepare_item_features`.
        source: the data's name, quoted in the message.
        limit: the largest sane |feature|.

    Returns:
        {modality: largest |value|} of the modalities warned about.
    """
    out = {}
    for name, start, stop in modality_slices:
        block = np.asarray(feat[:, start:stop], np.float64)
        top = float(np.abs(block).max())
        if top > limit:
            rms = float(np.sqrt(np.mean(block ** 2)))
            out[name] = top
            message = (
                f"{source}: item features {name!r} reach |x| = {top:.3g} (RMS {rms:.3g}), far "
                f"above the ~1 scale the models are initialised for (warning above {limit:g}); "
                "BPR training on them diverges to huge losses or learns nothing. Set "
                "config.data.standardize=True (prepare_item_features(standardize=True)) to "
                "standardise every feature column over items, or rescale the features.")
            logging.warning("%s", message)
            warnings.warn(message, UserWarning, stacklevel=2)
    return out


def prepare_item_features(features, pca_dims=None, standardize=False):
    """Concatenates item modalities into one matrix, optionally PCA-reducing each first.

    Args:
        features: modality name -> float [I, D_k]; dict order is the modality order.
        pca_dims: optional modality name -> number of PCA components. Modalities not named keep
            their raw features. None keeps every modality raw.
        standardize: standardise every column of every modality over items
            (`standardize_columns`) before the PCA; False keeps the values as given.

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
        if standardize:
            x = standardize_columns(x)
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
