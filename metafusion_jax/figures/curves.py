"""MetaMMF training curves: the epoch training loss and validation Recall@20 against the step.

    scalars = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    plot_training_curves(scalars, "curves.png", title="metammf on ml-100k")

or, for a finished run, `draw_metammf_curves(workdir)` -> `<workdir>/figures/training_curves.png`.
"""
import json
import os

import numpy as np
from matplotlib.figure import Figure

FIGURES_DIR = "figures"
LOSS_TAG = "train/loss"
VAL_TAG = "val/recall@20"
DPI = 110


def save_figure(fig, path):
    """Writes `fig` as a PNG to `path` (parent folders created); returns `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", format="png")
    return path


def read_metrics(path):
    """Every scalar of a metrics.jsonl as tag -> (steps int64 [N], values float64 [N]).

    Rows missing a tag are skipped for that tag; the "step" and "time" columns are not tags.

    Raises:
        ValueError: the file is missing or a line is not a JSON object.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path} not found: no metrics log. Pass the metrics.jsonl of a run "
                         "(train_and_evaluate writes one into its workdir).")
    series = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {n} is not JSON ({err.msg}). Is it a "
                                 "metrics.jsonl of a run?") from None
            if not isinstance(row, dict) or "step" not in row:
                raise ValueError(f"{path} line {n} is not a metrics row with a step.")
            for tag, value in row.items():
                if tag not in ("step", "time"):
                    series.setdefault(tag, ([], []))
                    series[tag][0].append(int(row["step"]))
                    series[tag][1].append(float(value))
    return {t: (np.asarray(s, np.int64), np.asarray(v, np.float64))
            for t, (s, v) in series.items()}


def plot_training_curves(scalars, path, title="", loss_tag=LOSS_TAG, val_tag=VAL_TAG):
    """Two panels: training loss and validation metric against the step, best value marked.

    Args:
        scalars: tag -> (steps [N], values [N]), e.g. `read_metrics(...)`.
        path: PNG file to write.
        title: figure title.
        loss_tag, val_tag: the tags to plot.

    Returns:
        path.

    Raises:
        ValueError: a tag is missing from `scalars`.
    """
    for tag in (loss_tag, val_tag):
        if tag not in scalars:
            raise ValueError(f"training curves: no {tag!r} in the metrics (tags: "
                             f"{sorted(scalars)[:8]}...). Plot a finished MetaMMF run.")
    fig = Figure(figsize=(9, 3.4))
    ax_loss, ax_val = fig.subplots(1, 2)
    steps, loss = scalars[loss_tag]
    ax_loss.plot(steps, loss, color="tab:blue", marker="o", markersize=3)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("BPR loss (epoch mean)")
    ax_loss.set_title("training loss")
    ax_loss.grid(alpha=0.3)
    steps, val = scalars[val_tag]
    ax_val.plot(steps, val, color="tab:green", marker="o", markersize=4)
    best = int(np.argmax(val))
    ax_val.scatter([steps[best]], [val[best]], s=90, facecolors="none", edgecolors="tab:red",
                   zorder=3, label=f"best {val[best]:.4f} (step {steps[best]})")
    ax_val.set_xlabel("step")
    ax_val.set_ylabel(val_tag.split("/")[-1])
    ax_val.set_title(f"validation {val_tag.split('/')[-1]}")
    ax_val.legend(loc="lower right", fontsize=8)
    ax_val.grid(alpha=0.3)
    if title:
        fig.suptitle(title, y=1.03)
    return save_figure(fig, path)


def draw_metammf_curves(workdir, path=None, title=""):
    """`plot_training_curves` of a MetaMMF run's metrics.jsonl; default path
    `<workdir>/figures/training_curves.png`. Returns the path."""
    path = path or os.path.join(workdir, FIGURES_DIR, "training_curves.png")
    return plot_training_curves(read_metrics(os.path.join(workdir, "metrics.jsonl")), path,
                                title=title)
