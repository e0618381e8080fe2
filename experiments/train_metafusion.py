r"""Trains a Meta Fusion cohort (and its baselines) and prints every method's test metric.

    python experiments/train_metafusion.py --config=configs/metafusion.py:setting_2_2 \
        --workdir=/tmp/mf/setting_2_2 --config.num_seeds=10

Writes `<workdir>/results.json`, `metrics.jsonl`, TensorBoard events and orbax checkpoints
(every `--config.checkpoint_every_epochs` epochs); a killed run started again with the same
flags resumes inside the stage it was killed in and gives the same results.json.

Several processes (hosts), each with the same flags plus its own id; process 0 writes the logs
and results.json, all of them write the checkpoints together:

    python experiments/train_metafusion.py --config=configs/metafusion.py:smoke \
        --workdir=/tmp/mf/smoke --coordinator_address=127.0.0.1:12345 --num_processes=2 \
        --process_id=0      # and --process_id=1 on the second process
"""
import os

from metafusion_jax.training.xla_flags import apply_cpu_flags

apply_cpu_flags()  # before any JAX computation; see the module docstring

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from metafusion_jax.metafusion import train  # noqa: E402
from metafusion_jax.training import mesh  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Meta Fusion config file:variant.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results, logs and checkpoints.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "Multi-process runs: HOST:PORT of process 0 (every process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Multi-process runs: process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "Multi-process runs: this process's id.")
flags.mark_flags_as_required(["config", "workdir"])

# Paper labels (spec 2.6) in display order; keys missing from a run are skipped.
_LABELS = (
    ("meta_fusion", "Meta Fusion (greedy @ rho*)"),
    ("stacking", "Stacking"),
    ("best_single", "Best Single"),
    ("indep_best_single", "Best Single (ind.)"),
    ("indep_greedy", "Meta Fusion (ind. cohort)"),
    ("simple_average", "Simple Avg."),
    ("weighted_average", "Weighted Avg."),
    ("majority_voting", "Majority Voting"),
    ("weighted_voting", "Weighted Voting"),
    ("early_fusion", "Early Fusion"),
    ("late_fusion", "Late Fusion"),
    ("coop", "Coop"),
)


def format_table(results: dict, test: dict) -> str:
    """Markdown table of method | test metric (mean +- SE over seeds)."""
    labels = list(_LABELS)
    labels += [(k, f"Modality {k.split('_')[1]}") for k in test
               if k.startswith("modality_") and not k.endswith("_se")]
    name = f"test {results['metric']} (mean +- SE, {len(results['seeds'])} seeds)"
    lines = [f"| method | {name} |", "|---|---|"]
    for key, label in labels:
        if key in test:
            lines.append(f"| {label} | {test[key]:.4f} +- {test[key + '_se']:.4f} |")
    return "\n".join(lines)


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Before any jax computation (flags win over JAX_COORDINATOR_ADDRESS etc.).
    mesh.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if not mesh.is_writer():
        return
    print(format_table(results, results["test"]))
    print(f"rho* per seed: {results['rho_star']}  |  best cluster size per seed: "
          f"{[len(c or []) for c in results['best_cluster']]}")
    if "b1_arm" in results:
        arm = results["b1_arm"]
        print(f"\nOther B1 arm (warm_start_b1={arm['warm_start_b1']}; cohort-based methods):")
        print(format_table(results, arm["test"]))
        print(f"rho* per seed: {arm['rho_star']}")
    path = os.path.join(os.path.abspath(_WORKDIR.value), "results.json")
    print(f"wall time: {results['timing']['total_s']:.1f} s  ->  {path}")


if __name__ == "__main__":
    app.run(main)
