"""Meta Fusion's synthetic multi-modal regression generator and the data of the paper settings.

Reproduces the reference generator (spec metafusion.md section 5.1) draw for
draw with numpy's legacy global RNG, so targets and splits equal the
reference's for the same seed:

1. `np.random.seed(seed)`; beta_m ~ U(-b, b)^{q_m} for each modality m, then
   beta_s ~ U(-b, b)^{q_s}; beta_int = an integer zero vector of length
   prod_m q_m, positions `np.random.choice(L, floor(pi * L), replace=False)`
   then values U(-b, b) at those positions (assigned into the int array, so
   truncated toward zero: bug B8, `int_truncation=True`); then
   T_m ~ N(0, 1)^{(q_m + q_s) x p_m} for each m.
2. `np.random.seed(seed)` again (bug B9: the samples reuse the coefficient
   stream); Z_m ~ N(0, 1)^{n x q_m} for each m, then S ~ N(0, 1)^{n x q_s};
   for each m: E_m ~ N(0, 1)^{n x p_m}, B_m = StandardScaler([Z_m, S] T_m)
   fitted on all n rows, X_m = r_m E_m + (1 - r_m) B_m.
3. Y = sum_m a_m g_m(Z_m) beta_m + a_s g_s(S) beta_s
   + a_int vec(Z_1 (x) Z_2 (x) ...) beta_int (only when a_int != 0); no noise.

Assumptions where the spec leaves the sub-draw order open (documented choices):
- Interaction positions are drawn before their values, with
  `np.random.choice(..., replace=False)` (== `permutation(L)[:k]` in the legacy
  RNG). This is the only order among the natural readings that reproduces the
  spec's check "24 nonzero values at seed 1, 20x20 latents, pi=0.1" (values
  first gives 28, choice with replacement 22).
- The interaction draws happen even when pi = 0 or a_int = 0 (a permutation of
  L is still consumed), so T_m always follows them.
- q_s = 0 draws nothing (numpy draws of size 0 consume no randomness).
- Z_m, S as `np.random.normal(size=(n, q))`; `multivariate_normal(0, I)` in the
  legacy RNG consumes and returns the same values.
"""
import functools
from typing import NamedTuple

import numpy as np
from sklearn.preprocessing import StandardScaler

from metafusion_jax.data.multiview.container import MultiModalData, Split, split_indices
from metafusion_jax.data.multiview.container import validate_views

TRANSFORMS = {
    "linear": lambda x: x,
    "quadratic": lambda x: x ** 2 - x,
    "sin": lambda x: 5.0 * np.sin(0.2 * x ** 2) + 0.2 * x ** 2,
}


def _setting(p, q, r, g, a, pi):
    return dict(dim_modalities=p, dim_latent=q, noise_ratios=r, trans_type=g, mod_prop=a,
                interactive_prop=pi, n=2000, task="regression")


_LIN, _QUAD = "linear", "quadratic"
# Spec 5.2: what generates each setting's data (the cohort, head, epochs and rho list of each
# setting are training choices: `metafusion_jax.configs.metafusion`).
SETTINGS = {
    "setting_1_1": _setting((500, 400), (20, 30, 0), (0.4, 0.4), (_LIN,) * 3, (1, 1, 0, 0), 0.0),
    "setting_1_2": _setting((2000, 100), (20, 20, 0), (0.1, 0.1), (_QUAD, _LIN, _LIN), (1, 1, 0, 1),
                            0.1),
    "setting_1_3": _setting((2000, 100), (20, 20, 0), (0.5, 0.1), (_QUAD, _LIN, _LIN), (1, 1, 0, 1),
                            0.1),
    "setting_2_1": _setting((500, 400), (50, 30, 20), (0.4, 0.4), (_LIN,) * 3, (0, 0, 1, 0), 0.0),
    "setting_2_2": _setting((2000, 400), (50, 30, 20), (0.3, 0.3), (_LIN, _LIN, _QUAD), (0, 0, 1, 0),
                            0.0),
    "setting_2_3": _setting((2000, 400), (50, 30, 20), (0.5, 0.3), (_LIN, _LIN, _QUAD), (0, 0, 1, 0),
                            0.0),
    # Spec 5.2 negative-learning study: the data of setting 2.2.
    "negative_learning": _setting((2000, 400), (50, 30, 20), (0.3, 0.3), (_LIN, _LIN, _QUAD),
                                  (0, 0, 1, 0), 0.0),
}

GENERATOR_FIELDS = ("dim_modalities", "dim_latent", "noise_ratios", "trans_type", "mod_prop",
                    "interactive_prop")


class SimulatedDraw(NamedTuple):
    """Everything `data_sharing_reg` draws, for tests and diagnostics.

    Attributes:
        xs: K float64 arrays [N, p_m]; y: float64 [N].
        betas: K + 1 arrays (beta_1..beta_K, beta_s); beta_int: [prod q_m].
        transforms: K arrays T_m [(q_m + q_s), p_m]; latents: K + 1 arrays Z_m, S.
        signals: K arrays B_m [N, p_m] (standardised).
    """
    xs: tuple
    y: np.ndarray
    betas: tuple
    beta_int: np.ndarray
    transforms: tuple
    latents: tuple
    signals: tuple


def _check_generator_args(n, dim_modalities, dim_latent, noise_ratios, trans_type, mod_prop):
    k = len(dim_modalities)
    expected = {"dim_latent": k + 1, "noise_ratios": k, "trans_type": k + 1, "mod_prop": k + 2}
    got = {"dim_latent": len(dim_latent), "noise_ratios": len(noise_ratios),
           "trans_type": len(trans_type), "mod_prop": len(mod_prop)}
    for field, want in expected.items():
        if got[field] != want:
            raise ValueError(f"simulator: {field} needs {want} entries for {k} modalities, got {got[field]}.")
    for g in trans_type:
        if g not in TRANSFORMS:
            raise ValueError(f"simulator: trans_type {g!r} unknown; expected one of {sorted(TRANSFORMS)}.")
    if n < 2 or any(p < 1 for p in dim_modalities) or any(q < 0 for q in dim_latent):
        raise ValueError(f"simulator: need n >= 2, p_m >= 1, q >= 0; got n={n}, p={dim_modalities}, "
                         f"q={dim_latent}.")
    if any(not 0.0 <= r <= 1.0 for r in noise_ratios):
        raise ValueError(f"simulator: noise_ratios must lie in [0, 1], got {noise_ratios}.")


def data_sharing_reg(*, n, dim_modalities, dim_latent, noise_ratios, trans_type, mod_prop,
                     interactive_prop, seed, beta_bound=3.0, int_truncation=True):
    """Draws one data set exactly as the reference `DataSharingReg` (module docstring).

    Args:
        n: number of samples N.
        dim_modalities: K widths p_m.
        dim_latent: K + 1 latent sizes [q_1..q_K, q_s].
        noise_ratios: K values r_m in [0, 1].
        trans_type: K + 1 names from `TRANSFORMS` [g_1..g_K, g_s].
        mod_prop: K + 2 weights [a_1..a_K, a_s, a_int].
        interactive_prop: pi, the fraction of nonzero interaction coefficients.
        seed: seed of numpy's legacy global RNG (reseeded twice, as the reference).
        beta_bound: b of U(-b, b).
        int_truncation: True reproduces bug B8 (interaction coefficients truncated
            toward zero to integers); False keeps the float draws.

    Returns:
        `SimulatedDraw` with float64 arrays over all N rows (not split).
    """
    _check_generator_args(n, dim_modalities, dim_latent, noise_ratios, trans_type, mod_prop)
    k = len(dim_modalities)
    q, q_s = list(dim_latent[:k]), dim_latent[k]
    np.random.seed(seed)
    betas = [np.random.uniform(-beta_bound, beta_bound, qm) for qm in q]
    betas.append(np.random.uniform(-beta_bound, beta_bound, q_s))
    length = int(np.prod(q))
    n_int = int(np.floor(interactive_prop * length))
    beta_int = np.zeros(length, dtype=np.int64 if int_truncation else np.float64)
    positions = np.random.choice(length, n_int, replace=False)
    beta_int[positions] = np.random.uniform(-beta_bound, beta_bound, n_int)
    transforms = [np.random.normal(0.0, 1.0, (qm + q_s, pm)) for qm, pm in zip(q, dim_modalities)]

    np.random.seed(seed)
    latents = [np.random.normal(0.0, 1.0, (n, qm)) for qm in q]
    latents.append(np.random.normal(0.0, 1.0, (n, q_s)))
    xs, signals = [], []
    for m in range(k):
        noise = np.random.normal(0.0, 1.0, (n, dim_modalities[m]))
        signal = StandardScaler().fit_transform(np.concatenate([latents[m], latents[k]], 1) @ transforms[m])
        signals.append(signal)
        xs.append(noise_ratios[m] * noise + (1.0 - noise_ratios[m]) * signal)

    y = np.zeros(n)
    for m in range(k + 1):
        y = y + mod_prop[m] * (TRANSFORMS[trans_type[m]](latents[m]) @ betas[m])
    if mod_prop[k + 1] != 0:
        outer = functools.reduce(lambda a, b: (a[:, :, None] * b[:, None, :]).reshape(n, -1), latents[:k])
        y = y + mod_prop[k + 1] * (outer @ beta_int)
    return SimulatedDraw(tuple(xs), y, tuple(betas), beta_int, tuple(transforms), tuple(latents),
                         tuple(signals))


# The reference split: test 0.2 of all rows, then val 0.2 of the rest (random_state=seed);
# n=2000 gives 1280 / 320 / 400.
TEST_SIZE, VAL_SIZE = 0.2, 0.2


def make_synthetic(setting, *, seed, n=None, int_truncation=True, **overrides) -> MultiModalData:
    """Generates and splits one paper setting.

    Args:
        setting: a key of `SETTINGS` or a dict with the `GENERATOR_FIELDS`.
        seed: data seed (generator and split), as the reference's `random_state`.
        n: samples; default the setting's (2000). At least `container.min_rows(test_size=0.2,
            val_size=0.2)` = 27, so the splits hold the minimum (10, 5, 5) rows.
        int_truncation: bug B8 flag (see `data_sharing_reg`).
        **overrides: replace generator fields, e.g. `noise_ratios=(0.5, 0.3)`.

    Returns:
        `MultiModalData` with float32 X_m [N, p_m] and float32 y [N] per split.

    Raises:
        ValueError: unknown setting name or field; n below the minimum rows.
    """
    if isinstance(setting, str):
        if setting not in SETTINGS:
            raise ValueError(f"simulator: unknown setting {setting!r}; expected one of {sorted(SETTINGS)}.")
        name, cfg = setting, SETTINGS[setting]
    else:
        name, cfg = "custom", setting
    for key in overrides:
        if key not in GENERATOR_FIELDS:
            raise ValueError(f"simulator: override {key!r} is not a generator field {GENERATOR_FIELDS}.")
    gen = {f: overrides.get(f, cfg[f]) for f in GENERATOR_FIELDS}
    n = cfg.get("n", 2000) if n is None else n
    draw = data_sharing_reg(n=n, seed=seed, int_truncation=int_truncation, **gen)
    xs, y = validate_views(draw.xs, draw.y, source=f"simulator {name}")
    tr, va, te = split_indices(n, seed=seed, test_size=TEST_SIZE, val_size=VAL_SIZE,
                               source=f"simulator {name} (n={n})", n_classes=1)
    take = lambda ix: Split(tuple(x[ix] for x in xs), y[ix])
    names = tuple(f"modality_{m + 1}" for m in range(len(xs)))
    return MultiModalData(name, "regression", 1, names, take(tr), take(va), take(te))
