r"""The issue-4 "Must show" study: simulation settings 1.1-2.3 and UCI mfeat, B1 on and off.

One `train_and_evaluate` run per setting trains all seeds in one program and, with
`report_both_b1=True`, the first positive rho both with and without the reference's warm start
(bug B1), so each setting yields both arms. Runs one setting at a time (`--settings`) and merges
into `results/metafusion_study.json` + `results/metafusion_study.md`, so the study can be spread
over several sessions:

    python experiments/run_metafusion_study.py --settings=setting_2_2 --num_seeds=10
    python experiments/run_metafusion_study.py --settings=mfeat --num_seeds=5
    # time estimate first: 1 seed, 2 epochs, nothing merged into results/
    python experiments/run_metafusion_study.py --settings=setting_2_2 --num_seeds=1 --epochs=2 \
        --out=/tmp/mf_estimate
"""
from metafusion_jax.training.xla_flags import apply_cpu_flags

apply_cpu_flags()  # before any JAX computation; see the module docstring

import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from metafusion_jax.metafusion import train  # noqa: E402
from metafusion_jax.configs import metafusion as mf_configs  # noqa: E402
from metafusion_jax.training.artifacts import write_json_atomic  # noqa: E402

ALL = ("setting_1_1", "setting_1_2", "setting_1_3", "setting_2_1", "setting_2_2", "setting_2_3",
       "mfeat")
_SETTINGS = flags.DEFINE_list("settings", list(ALL), f"Variants to run, from {ALL}.")
_SEEDS = flags.DEFINE_integer("num_seeds", 10, "Seeds per setting (the study uses >= 10; mfeat 5).")
_SEED = flags.DEFINE_integer("seed", 1, "First seed.")
_EPOCHS = flags.DEFINE_integer("epochs", 0, "0: the config's epochs (30); else an override.")
_WORKROOT = flags.DEFINE_string("workroot", "/tmp/metafusion_study", "Per-setting workdirs.")
_OUT = flags.DEFINE_string("out", "results", "Folder of metafusion_study.{json,md}.")

# Methods in the study table (spec 2.6 labels); `b1_*` come from the other B1 arm.
COLUMNS = (("meta_fusion", "Meta Fusion"), ("stacking", "Stacking"),
           ("best_single", "Best Single"), ("indep_best_single", "Best Single (ind.)"),
           ("early_fusion", "Early Fusion"), ("late_fusion", "Late Fusion"), ("coop", "Coop"))


def run_setting(name: str, num_seeds: int, seed: int, epochs: int, workroot: str) -> dict:
    """Trains one variant with both B1 arms; returns its results.json dict plus wall time."""
    config = mf_configs.get_config(name)
    config.seed = seed
    config.num_seeds = num_seeds
    config.report_both_b1 = True
    if epochs:
        config.train.epochs = epochs
    start = time.time()
    workdir = os.path.join(workroot, f"{name}_seed{seed}x{num_seeds}_ep{config.train.epochs}")
    results = train.train_and_evaluate(config, workdir)
    results["study_wall_s"] = time.time() - start
    return results


def _cell(test: dict, key: str) -> str:
    if key not in test:
        return "-"
    return f"{test[key]:.3f} ({test[key + '_se']:.3f})"


def markdown(study: dict) -> str:
    """One row per (setting, B1 arm): mean (SE) over seeds, rho* counts, seeds, wall time."""
    head = ["setting", "B1 warm start", "metric", "seeds"] + [c for _, c in COLUMNS] + ["rho*"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in [n for n in ALL if n in study]:
        res = study[name]
        arms = [(res["config"]["warm_start_b1"], res["test"], res["rho_star"])]
        if "b1_arm" in res:
            other = res["b1_arm"]
            merged = dict(res["test"], **other["test"])
            arms.append((other["warm_start_b1"], merged, other["rho_star"]))
        for warm, test, rho_star in sorted(arms, key=lambda a: a[0]):
            counts = {r: rho_star.count(r) for r in sorted(set(rho_star))}
            rho = ", ".join(f"{r:g}: {c}" for r, c in counts.items())
            row = [name, "on" if warm else "off", res["metric"], str(len(res["seeds"]))]
            row += [_cell(test, key) for key, _ in COLUMNS] + [rho]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Cells: mean (standard error) over seeds of the test metric (MSE for the "
                 "simulations, lower is better; accuracy for mfeat, higher is better). rho*: "
                 "how many seeds chose each rho. Methods not run for a dataset show '-'.")
    timing = ", ".join(f"{n} {study[n]['study_wall_s']:.0f} s" for n in ALL if n in study)
    lines.append(f"Wall time per setting (all seeds, both B1 arms): {timing}.")
    return "\n".join(lines) + "\n"


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    del argv
    for name in _SETTINGS.value:
        if name not in ALL:
            raise app.UsageError(f"--settings: {name!r} is not one of {ALL}")
    path = os.path.join(_OUT.value, "metafusion_study.json")
    study = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            study = json.load(f)
    for name in _SETTINGS.value:
        study[name] = run_setting(name, _SEEDS.value, _SEED.value, _EPOCHS.value, _WORKROOT.value)
        write_json_atomic(path, study)
        with open(os.path.join(_OUT.value, "metafusion_study.md"), "w", encoding="utf-8") as f:
            f.write(markdown(study))
        print(f"{name}: {study[name]['study_wall_s']:.1f} s")
    print(markdown(study))


if __name__ == "__main__":
    app.run(main)
