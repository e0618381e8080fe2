r"""Trains a MetaMMF recommender (or a baseline) and prints its val/test metrics.

    python experiments/train_metammf.py --config=configs/metammf.py:ml100k \
        --workdir=/tmp/mm_ml100k [--config.model.name=lightgcn] [--config.model.fusion=cp] \
        [--config.model.lightgcn.n_layers=2] [--config.data.pca_dims="(('title', 32),)"]

Rerunning with the same --workdir resumes from its latest checkpoint; the results are written to
<workdir>/results.json, metrics.jsonl and TensorBoard event files.
"""
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from metafusion_jax.metammf import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/metammf.py:ml100k.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, results).")
flags.mark_flags_as_required(["config", "workdir"])

_COLUMNS = ("precision", "recall", "ndcg", "hr")
_KS = (10, 20)


def format_table(results):
    """The val and test metrics of `results` as a fixed-width text table."""
    names = [f"{m}@{k}" for m in _COLUMNS for k in _KS]
    lines = [f"{results['model']} on {results['dataset']} (best epoch {results['best_epoch']})",
             f"{'split':<6}" + "".join(f"{n:>14}" for n in names)]
    for split in ("val", "test"):
        lines.append(f"{split:<6}" + "".join(f"{results[split][n]:>14.4f}" for n in names))
    timing = results["timing"]
    lines.append(f"time: total {timing['total_s']:.1f} s, {timing['per_epoch_s']:.2f} s/epoch, "
                 f"{1e3 * timing['per_step_s']:.1f} ms/step, eval {timing['eval_s']:.1f} s, "
                 f"compile {timing['compile_s']:.1f} s")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # orbax logs every save at INFO; progress is the tqdm bar and metrics.jsonl.
    logging.set_verbosity(logging.WARNING)
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if results.get("status") == "paused":
        print(f"paused after epoch {results['epoch']}; rerun with the same --workdir to resume")
        return
    print(format_table(results))


if __name__ == "__main__":
    app.run(main)
