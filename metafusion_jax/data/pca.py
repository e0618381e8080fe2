"""The one PCA of the package (both methods): exact, float64, sklearn's sign convention.

MetaMMF reduces each item modality with it (`metammf.features`, the reference's "v0530" inputs);
Meta Fusion's PCA extractor fits it on train+val rows (`metafusion.extractors.pca_inputs`).
"""
import numpy as np


def fit_pca(x: np.ndarray, n_components: int):
    """Exact PCA (float64 eigendecomposition of the smaller Gram matrix, ~5x faster than an SVD
    of [1600, 2000]) with sklearn's sign convention (largest |loading| of each component > 0).

    Args:
      x: float [N, D] rows to fit on (train+val, as the reference).
      n_components: number of components kept (<= min(N, D)).

    Returns:
      (mean [D], components [D, n_components]); scores are (x - mean) @ components.
    """
    x = np.asarray(x, np.float64)
    if not 1 <= n_components <= min(x.shape):
        raise ValueError(f"PCA n_components={n_components} must be in [1, min(n_rows, width) = "
                         f"{min(x.shape)}]; lower the latent dim or fit on more rows.")
    mean = x.mean(axis=0)
    xc = x - mean
    if xc.shape[0] < xc.shape[1]:
        evals, u = np.linalg.eigh(xc @ xc.T)
        order = np.argsort(evals)[::-1][:n_components]
        v = xc.T @ u[:, order] / np.sqrt(np.maximum(evals[order], 1e-300))
    else:
        evals, v = np.linalg.eigh(xc.T @ xc)
        v = v[:, np.argsort(evals)[::-1][:n_components]]
    signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    return mean, v * signs[None, :]


def pca_scores(x: np.ndarray, n_components: int, fit_rows=None) -> np.ndarray:
    """Top-`n_components` principal scores of every row of x [N, D], fitted on `fit_rows`.

    Args:
      x: float [N, D].
      n_components: kept components, 1 <= n_components <= min(N_fit, D).
      fit_rows: optional int [N_fit] rows to fit on (default all rows).

    Returns:
      float32 [N, n_components] = (x - mean) @ components.
    """
    x = np.asarray(x, np.float64)
    mean, comps = fit_pca(x if fit_rows is None else x[fit_rows], n_components)
    return ((x - mean) @ comps).astype(np.float32)
