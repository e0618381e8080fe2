"""How much each modality drives each item's fused representation in MetaMMF.

The first fusion layer is linear in the item's features for its own meta vector s_i:
h_i = x_i W_i(s_i), so h_i = sum_k x_i[block k] W_i[block k, :] splits exactly into one
contribution per modality block. The attribution of modality k to item i is the norm of that
contribution, || x_i[k] W_i[k] ||, normalised over k to a share (rows sum to 1). It is computed
with the layer's factored `apply_one` on the block-masked features, so W_i is never built.

    shares = modality_shares(layers.FUSION_KINDS["dense"].apply_one, params["fusion"][0],
                             features, s, slices)            # [I, K]
    agreement(shares, driver)                                # planted synthetic data
    plot_modality(shares, names, "modality.png", driver=driver)
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.data.rec import synthetic
from metafusion_jax.figures.curves import FIGURES_DIR, save_figure
from metafusion_jax.metammf import layers

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def slices_of(widths):
    """((name, start, stop), ...) of modalities concatenated in the order of `widths`.

    Args:
        widths: ((name, D_k), ...) or {name: D_k} (after any PCA: the widths the model sees).
    """
    out, start = [], 0
    for name, width in (widths.items() if isinstance(widths, dict) else widths):
        out.append((str(name), start, start + int(width)))
        start += int(width)
    return tuple(out)


def block_contributions(apply_one, layer_params, features, s, slices):
    """|| x_i[k] W_i(s_i)[k] || for every item i and modality block k.

    Args:
        apply_one: a `FusionLayer.apply_one` (params, x_i [F], s_i [S]) -> [H], linear in x_i.
        layer_params: that layer's params (the first fusion layer).
        features: float [I, F].
        s: float [I, S] meta vectors (any array for the static kind).
        slices: ((name, start, stop), ...) covering [0, F).

    Returns:
        float32 [I, K].
    """
    features = jnp.asarray(features)
    width = features.shape[1]
    masks = np.zeros((len(slices), width), np.float32)
    for k, (_, start, stop) in enumerate(slices):
        masks[k, start:stop] = 1.0
    if slices[-1][2] != width:
        raise ValueError(f"modality slices end at {slices[-1][2]}, the features have {width} "
                         "columns. Pass the slices of the features the model sees.")

    def per_item(x_i, s_i):
        blocks = jax.vmap(lambda m: apply_one(layer_params, x_i * m, s_i))(jnp.asarray(masks))
        return jnp.linalg.norm(blocks, axis=-1)

    return np.asarray(jax.jit(jax.vmap(per_item))(features, jnp.asarray(s)))


def modality_shares(apply_one, layer_params, features, s, slices):
    """`block_contributions` normalised per item: float32 [I, K], rows sum to 1."""
    contrib = block_contributions(apply_one, layer_params, features, s, slices)
    return contrib / np.maximum(contrib.sum(axis=1, keepdims=True), 1e-12)


def metammf_shares(params, features, slices, fusion_kind):
    """Modality shares [I, K] of a MetaMMF model's params (model.init's dict layout)."""
    if fusion_kind not in layers.FUSION_KINDS:
        raise ValueError(f"fusion_kind must be one of {sorted(layers.FUSION_KINDS)}, got "
                         f"{fusion_kind!r}.")
    features = jnp.asarray(features)
    if "meta" in params:
        s = layers.meta_info(params["meta"], features)
    else:  # static: no meta vector
        s = jnp.zeros((features.shape[0], 1), jnp.float32)
    return modality_shares(layers.FUSION_KINDS[fusion_kind].apply_one, params["fusion"][0],
                           features, s, slices)


def agreement(shares, driver):
    """Fraction of items whose largest share is their planted driver modality.

    Args:
        shares: float [I, K].
        driver: int [I] modality index per item (same order as the share columns).
    """
    shares, driver = np.asarray(shares), np.asarray(driver)
    if driver.shape != (shares.shape[0],):
        raise ValueError(f"driver must have shape [I] = ({shares.shape[0]},), got "
                         f"{driver.shape}.")
    return float((shares.argmax(axis=1) == driver).mean())


def relative_agreement(shares, driver):
    """Agreement of the item-specific part: argmax over k of share_ik / mean_i share_ik.

    Wide blocks take a larger share of every item (the raw `agreement` then mostly says which
    modality is widest); dividing by the mean share over items asks which modality this item
    uses more than the average item does.
    """
    shares = np.asarray(shares, np.float64)
    return agreement(shares / np.maximum(shares.mean(axis=0, keepdims=True), 1e-12), driver)


def planted_driver(names, *, n_users, n_items, n_interactions, modality_dims, seed):
    """The planted driver of `make_synthetic_microvideo(...)`, reordered to `names`.

    Regenerates the data (seconds at the synthetic config's size) and returns int32 [I] indices
    into `names` (the modality order the model sees).
    """
    _, info = synthetic.make_synthetic_microvideo(
        n_users=n_users, n_items=n_items, n_interactions=n_interactions,
        modality_dims=dict(modality_dims) or None, seed=seed)
    position = {name: names.index(name) for name in info["modalities"]}
    lookup = np.array([position[m] for m in info["modalities"]], np.int32)
    return lookup[info["driver"]]


def plot_modality(shares, names, path, driver=None, n_examples=6, title=""):
    """Distribution of each modality's share over items, plus stacked shares of example items.

    With `driver`, items are grouped by planted driver in the left panel (one box per
    (driver, modality)) and the agreement is in the title.

    Args:
        shares: float [I, K] rows summing to 1.
        names: K modality names.
        path: PNG file.
        driver: optional int [I] planted driver index per item.
        n_examples: items in the right panel (the first items of each driver group, or the first).
        title: figure title prefix.

    Returns:
        path.
    """
    from matplotlib.figure import Figure

    shares = np.asarray(shares, np.float64)
    n_items, n_mod = shares.shape
    if len(names) != n_mod:
        raise ValueError(f"names has {len(names)} entries, shares has {n_mod} columns.")
    fig = Figure(figsize=(11, 3.8))
    ax_dist, ax_ex = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    groups = range(n_mod) if driver is not None else [None]
    for g, group in enumerate(groups):
        rows = shares if group is None else shares[np.asarray(driver) == group]
        if len(rows) == 0:
            continue
        positions = [g * (n_mod + 1) + k for k in range(n_mod)]
        box = ax_dist.boxplot([rows[:, k] for k in range(n_mod)], positions=positions,
                              widths=0.7, patch_artist=True, showfliers=False)
        for k, patch in enumerate(box["boxes"]):
            patch.set_facecolor(COLORS[k % len(COLORS)])
            patch.set_alpha(0.7)
    if driver is None:
        ax_dist.set_xticks(range(n_mod), names)
        ax_dist.set_xlabel("modality")
    else:
        centers = [g * (n_mod + 1) + (n_mod - 1) / 2 for g in range(n_mod)]
        counts = np.bincount(np.asarray(driver), minlength=n_mod)
        ax_dist.set_xticks(centers, [f"driver: {n}\n({c} items)" for n, c in zip(names, counts)])
    ax_dist.axhline(1.0 / n_mod, color="grey", linestyle=":", linewidth=1)
    ax_dist.set_ylabel("share of the first fusion layer's output")
    ax_dist.set_title("per-item modality share, distribution over items")
    ax_dist.set_ylim(0, 1.0)

    if driver is None:
        examples = np.arange(min(n_examples, n_items))
    else:
        per_group = max(1, n_examples // n_mod)
        examples = np.concatenate([np.flatnonzero(np.asarray(driver) == g)[:per_group]
                                   for g in range(n_mod)])
    bottom = np.zeros(len(examples))
    for k in range(n_mod):
        ax_ex.bar(range(len(examples)), shares[examples, k], bottom=bottom,
                  color=COLORS[k % len(COLORS)], alpha=0.8, label=names[k])
        bottom += shares[examples, k]
    labels = [f"{i}" + ("" if driver is None else f"\n{names[int(driver[i])]}")
              for i in examples]
    ax_ex.set_xticks(range(len(examples)), labels, fontsize=7)
    ax_ex.set_ylim(0, 1)
    ax_ex.legend(title="modality", fontsize=8, title_fontsize=8, loc="center left",
                 bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax_ex.set_xlabel("item id" + ("\nplanted driver" if driver is not None else ""), fontsize=8)
    ax_ex.set_title("example items")
    full = title or "MetaMMF modality attribution"
    if driver is not None:
        full += (f"\ntop modality = planted driver for {agreement(shares, driver):.1%} of items; "
                 f"relative to the mean item {relative_agreement(shares, driver):.1%} "
                 f"(chance {1 / n_mod:.0%})")
    fig.suptitle(full, y=1.12 if driver is not None else 1.04)
    return save_figure(fig, path)


def draw_metammf_modality(workdir, params, features, slices, fusion_kind, driver=None,
                          path=None):
    """Modality figure of trained MetaMMF params into `<workdir>/figures/modality.png`.

    Returns:
        (path, summary): summary is {"mean_share": {name: float}, "agreement": float or None,
        "relative_agreement": float or None} (with `driver` when given), what the trainer
        records in results.json.
    """
    shares = metammf_shares(params, features, slices, fusion_kind)
    names = [n for n, _, _ in slices]
    path = path or os.path.join(workdir, FIGURES_DIR, "modality.png")
    plot_modality(shares, names, path, driver=driver)
    summary = {"mean_share": {n: float(v) for n, v in zip(names, shares.mean(axis=0))},
               "agreement": None if driver is None else agreement(shares, driver),
               "relative_agreement": None if driver is None else relative_agreement(shares,
                                                                                    driver)}
    return path, summary
