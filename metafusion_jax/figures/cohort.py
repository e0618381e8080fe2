"""Meta Fusion cohort figures: divergence weights, the member grid, greedy picks, val loss per rho.

Functions over explicit arrays (M members, S seeds):

    plot_divergence_weights(weights [S, M], best_cluster [S][...], dims [M][K], path)
    plot_member_grid(dims [M][K], test [S, M], path, metric="mse")   # the latent-dim grid
    plot_greedy_picks(greedy_members [S][...], n_members, path)
    plot_val_loss_per_rho(scalars, path)   # scalars = curves.read_metrics(metrics.jsonl)

and `draw_metafusion_figures(workdir)`, which reads a finished run's results.json and
metrics.jsonl and writes all four into `<workdir>/figures/`.
"""
import json
import os
import re

import numpy as np
from matplotlib.figure import Figure

from metafusion_jax.figures.curves import FIGURES_DIR, read_metrics, save_figure

# Stages whose members are the cohort's (the baselines' and coop's own models are not).
COHORT_STAGES = ("indep", "mutual")
MEMBER_TAG = re.compile(r"^(?P<stage>\w+)/rho_(?P<rho>[^/]+)/val_task/member_(?P<m>\d+)$")


def _dims_label(dims):
    return "(" + ",".join(str(int(d)) for d in dims) + ")"


def plot_divergence_weights(weights, best_cluster, dims, path):
    """Bars of each member's divergence weight (mean over seeds), best-cluster members marked.

    Args:
        weights: float [S, M] (or [M]) divergence weights per seed.
        best_cluster: per seed, the member indices of the best cluster.
        dims: M per-modality latent sizes (x labels).
        path: PNG file.
    """
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    n_members = weights.shape[1]
    if len(dims) != n_members:
        raise ValueError(f"dims has {len(dims)} members, weights {n_members}.")
    in_cluster = np.zeros(n_members)
    for cluster in best_cluster:
        in_cluster[list(cluster)] += 1
    in_cluster /= max(len(best_cluster), 1)
    fig = Figure(figsize=(max(6, 0.45 * n_members + 2), 3.6))
    ax = fig.subplots()
    colors = ["tab:red" if c > 0 else "tab:grey" for c in in_cluster]
    ax.bar(range(n_members), weights.mean(axis=0), color=colors,
           yerr=weights.std(axis=0) if len(weights) > 1 else None, capsize=2)
    ax.set_xticks(range(n_members), [_dims_label(d) for d in dims], rotation=60, ha="right",
                  fontsize=7)
    ax.set_xlabel("member (latent dims per modality)")
    ax.set_ylabel("divergence weight")
    ax.set_title(f"divergence weights (mean over {len(weights)} seed(s)); red = in the best "
                 "cluster", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_member_grid(dims, test, path, metric="error"):
    """Per-member test error over the latent-dim grid (mean over seeds).

    Two modalities: a heatmap with modality-1 dims on the rows and modality-2 dims on the
    columns, each cell annotated; otherwise one bar per member.

    Args:
        dims: M per-modality latent sizes.
        test: float [S, M] (or [M]) per-member test error.
        path: PNG file.
        metric: the error's name for the colour bar / axis.
    """
    dims = np.asarray(dims, np.int64)
    test = np.atleast_2d(np.asarray(test, np.float64)).mean(axis=0)
    if dims.shape[0] != test.shape[0]:
        raise ValueError(f"dims has {dims.shape[0]} members, test {test.shape[0]}.")
    fig = Figure(figsize=(6.5, 4.6))
    ax = fig.subplots()
    if dims.ndim == 2 and dims.shape[1] == 2:
        rows, cols = np.unique(dims[:, 0]), np.unique(dims[:, 1])
        grid = np.full((len(rows), len(cols)), np.nan)
        for (a, b), value in zip(dims, test):
            grid[np.searchsorted(rows, a), np.searchsorted(cols, b)] = value
        image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
        middle = np.nanmean([np.nanmin(grid), np.nanmax(grid)])
        for r in range(len(rows)):
            for c in range(len(cols)):
                finite = np.isfinite(grid[r, c])
                ax.text(c, r, f"{grid[r, c]:.4g}" if finite else "no member", ha="center",
                        va="center", fontsize=9,
                        color=("black" if grid[r, c] < middle else "white") if finite
                        else "grey")
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("modality 2 latent dim (0 = modality unused)")
        ax.set_ylabel("modality 1 latent dim")
        fig.colorbar(image, ax=ax, label=f"test {metric}")
        best = int(np.argmin(test))
        ax.set_title(f"per-member test {metric} over the latent-dim grid\n(best member "
                     f"{_dims_label(dims[best])}: {test[best]:.4g})")
    else:
        ax.bar(range(len(test)), test, color="tab:blue")
        ax.set_xticks(range(len(test)), [_dims_label(d) for d in dims], rotation=60,
                      ha="right", fontsize=7)
        ax.set_ylabel(f"test {metric}")
        ax.set_title(f"per-member test {metric}")
    return save_figure(fig, path)


def plot_greedy_picks(greedy_members, n_members, path, dims=None):
    """How often each member is picked by the greedy ensemble, over seeds (picks counted with
    repetition: greedy selection may pick a member more than once)."""
    counts = np.zeros(n_members)
    for picks in greedy_members:
        np.add.at(counts, np.asarray(list(picks), np.int64), 1)
    fig = Figure(figsize=(max(6, 0.45 * n_members + 2), 3.4))
    ax = fig.subplots()
    ax.bar(range(n_members), counts, color="tab:purple")
    labels = [_dims_label(d) for d in dims] if dims is not None else range(n_members)
    ax.set_xticks(range(n_members), labels, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("member" + (" (latent dims per modality)" if dims is not None else ""))
    ax.set_ylabel("times picked")
    ax.set_title(f"greedy ensemble picks over {len(greedy_members)} seed(s)")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def member_curves(scalars):
    """{(stage, rho): {member: (steps, val_loss)}} of the COHORT_STAGES from metrics.jsonl."""
    out = {}
    for tag, series in scalars.items():
        match = MEMBER_TAG.match(tag)
        if match and match["stage"] in COHORT_STAGES:
            key = (match["stage"], match["rho"])
            out.setdefault(key, {})[int(match["m"])] = series
    return out


def plot_val_loss_per_rho(scalars, path, metric="loss"):
    """One panel per (stage, rho): every member's validation task loss against the step.

    Raises:
        ValueError: no `<stage>/rho_<rho>/val_task/member_<m>` tags in `scalars`.
    """
    curves = member_curves(scalars)
    if not curves:
        raise ValueError("no per-member validation curves (tags <stage>/rho_<rho>/val_task/"
                         "member_<m>) in the metrics. Plot a Meta Fusion run's metrics.jsonl.")
    keys = sorted(curves, key=lambda k: (k[0] != "indep", k[0], float(k[1])
                                         if re.fullmatch(r"[-0-9.e]+", k[1]) else 0.0))
    fig = Figure(figsize=(3.6 * len(keys), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(keys), sharey=True))
    for ax, key in zip(axes, keys):
        members = curves[key]
        for m in sorted(members):
            steps, values = members[m]
            ax.plot(steps - steps.min() + 1, values, linewidth=1, label=f"member {m}")
        ax.set_title(("independent (rho = 0)" if key[0] == "indep" else
                      f"mutual learning, rho = {key[1]}"), fontsize=10)
        ax.set_xlabel("epoch of this stage")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"validation {metric}")
    if len(curves[keys[0]]) <= 12:
        axes[-1].legend(fontsize=6, loc="upper right")
    fig.suptitle("per-member validation loss per rho", y=1.02)
    return save_figure(fig, path)


def draw_metafusion_figures(workdir, out_dir=None, results=None):
    """The four cohort figures of a finished Meta Fusion run; returns {name: path}.

    Reads results.json (weights, best_cluster, members.dims, members.rho_star.test and
    greedy_members, metric), or takes the `results` dict itself (what the trainer is about to
    write), and metrics.jsonl (per-member validation curves).

    Raises:
        ValueError: results.json missing (the run did not finish) or lacking a field.
    """
    path = os.path.join(workdir, "results.json")
    if results is None:
        if not os.path.isfile(path):
            raise ValueError(f"{path} not found: the Meta Fusion run in {workdir} has not "
                             "finished. Run train_metafusion.py to the end first.")
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    try:
        members = results["members"]
        dims, chosen = members["dims"], members["rho_star"]
        weights, cluster = results["weights"], results["best_cluster"]
        test, greedy, metric = chosen["test"], chosen["greedy_members"], results["metric"]
    except KeyError as err:
        raise ValueError(f"{path} lacks the field {err}; it is not a Meta Fusion results file "
                         "(or one from an older version).") from None
    out_dir = out_dir or os.path.join(workdir, FIGURES_DIR)
    drawn = {
        "divergence_weights": plot_divergence_weights(
            weights, cluster, dims, os.path.join(out_dir, "divergence_weights.png")),
        "member_grid": plot_member_grid(dims, test, os.path.join(out_dir, "member_grid.png"),
                                        metric=metric),
        "greedy_picks": plot_greedy_picks(greedy, len(dims),
                                          os.path.join(out_dir, "greedy_picks.png"), dims=dims),
    }
    metrics = os.path.join(workdir, "metrics.jsonl")
    if os.path.isfile(metrics):
        drawn["val_loss_per_rho"] = plot_val_loss_per_rho(
            read_metrics(metrics), os.path.join(out_dir, "val_loss_per_rho.png"), metric=metric)
    return drawn
