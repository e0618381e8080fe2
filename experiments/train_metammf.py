r"""Trains a MetaMMF recommender (or a baseline) and prints its val/test metrics.

    python experiments/train_metammf.py --config=configs/metammf.py:ml100k \
        --workdir=/tmp/mm_ml100k [--config.model.name=lightgcn] [--config.model.fusion=cp] \
        [--config.model.lightgcn.n_layers=2] [--config.data.pca_dims="(('title', 32),)"]

Several processes (hosts): the same flags on each plus --coordinator_address=HOST:PORT
--num_processes=N --process_id=I; process 0 writes logs and results.json, all write checkpoints.

Rerunning with the same --workdir resumes from its latest checkpoint; the results are written to
<workdir>/results.json (its path is printed last), metrics.jsonl, TensorBoard event files and,
with config.figures (on except in `smoke`), PNG figures in <workdir>/figures/.
--config.data.cold_items=0.2 holds out 20% of the items and reports cold-start metrics.
"""
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from metafusion_jax.metammf import train
from metafusion_jax.training import mesh

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/metammf.py:ml100k.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, results).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "Multi-process runs: HOST:PORT of process 0 (every process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Multi-process runs: process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "Multi-process runs: this process's id.")
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
    # Before any jax computation (flags win over JAX_COORDINATOR_ADDRESS etc.).
    mesh.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if not mesh.is_writer():
        return
    if results.get("status") == "paused":
        print(f"paused after epoch {results['epoch']}; rerun with the same --workdir to resume")
        return
    print(format_table(results))
    if "cold" in results:
        cold = results["cold"]
        print(f"cold start ({cold['n_items']} held-out items, {cold['n_users']} users): "
              + ", ".join(f"{k} {v:.4f}" for k, v in cold.items() if "@20" in k))
    if results.get("modality", {}).get("agreement") is not None:
        print(f"modality attribution: top modality = planted driver for "
              f"{results['modality']['agreement']:.1%} of items")
    for name, path in results.get("figures", {}).items():
        print(f"figure {name}: {os.path.join(_WORKDIR.value, path)}")
    print(f"results: {os.path.abspath(os.path.join(_WORKDIR.value, 'results.json'))}")


if __name__ == "__main__":
    app.run(main)
