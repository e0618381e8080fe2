"""Does item-specific fusion help? MetaMMF (dense, cp) and static fusion, one tuning budget each.

Every model gets the same grid on validation: learning rate x weight decay (9 configurations by
default), and within each run the epoch is chosen by validation Recall@20 (evaluated every
`eval_every` epochs up to num_epochs, early stopping): so epochs are tuned too, at no extra
cost. The configuration with the best mean validation Recall@20 over --grid_seeds is then run
on --final_seeds, and its test metrics (mean, std, per seed) are reported. Each run is
`experiments/train_metammf.py` in its own process and workdir (finished runs are skipped).

    python experiments/run_tuning_study.py --dataset=synthetic --backbone=gcn \
        --grid_seeds=0,1,2 --final_seeds=0,1,2 --out=results/metammf_tuning_synthetic
    python experiments/run_tuning_study.py --dataset=ml100k --extra=--config.num_epochs=30 \
        --out=results/metammf_tuning_ml100k

Writes OUT.json (every run's val/test) and OUT.md (the table, rendered from the JSON).
"""
import argparse
import itertools
import os
import statistics
import sys

# experiments/ is on sys.path when run as a script
from run_metammf_table import read_payload, train_once, write_markdown, write_payload

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {
    "MetaMMF (dense)": "model=metammf,fusion=dense",
    "MetaMMF (cp)": "model=metammf,fusion=cp",
    "static fusion": "model=metammf,fusion=static",
}
LEARNING_RATES = (1e-3, 3e-3, 1e-2)
WEIGHT_DECAYS = (0.0, 1e-6, 1e-4)
METRICS = ("recall@20", "ndcg@20", "recall@10", "ndcg@10")


def stats(values):
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def run_model(label, args, extra):
    grid = []
    for lr, wd in itertools.product(args.learning_rates, args.weight_decays):
        name = f"lr{lr:g}_wd{wd:g}"
        flags = extra + [f"--config.learning_rate={lr}", f"--config.weight_decay={wd}"]
        runs = [train_once(f"{args.dataset},{MODELS[label]},backbone={args.backbone},seed={s}",
                           flags, os.path.join(args.root, args.dataset, args.backbone,
                                               label.replace(" ", "_").replace("(", "")
                                               .replace(")", ""), name, f"seed{s}"))
                for s in args.grid_seeds]
        grid.append({"config": name, "learning_rate": lr, "weight_decay": wd,
                     "val_recall@20": stats([r["val"]["recall@20"] for r in runs]),
                     "best_epoch": [r["best_epoch"] for r in runs]})
    best = max(grid, key=lambda g: g["val_recall@20"]["mean"])
    flags = extra + [f"--config.learning_rate={best['learning_rate']}",
                     f"--config.weight_decay={best['weight_decay']}"]
    finals = [train_once(f"{args.dataset},{MODELS[label]},backbone={args.backbone},seed={s}",
                         flags, os.path.join(args.root, args.dataset, args.backbone,
                                             label.replace(" ", "_").replace("(", "")
                                             .replace(")", ""), best["config"], f"seed{s}"))
              for s in args.final_seeds]
    return {"grid": grid, "best_config": best["config"],
            "best_epoch": [r["best_epoch"] for r in finals],
            "val": {m: stats([r["val"][m] for r in finals]) for m in METRICS},
            "test": {m: stats([r["test"][m] for r in finals]) for m in METRICS}}


def render(payload):
    a = payload["args"]
    lines = [f"### Tuning study: {a['dataset']}, {a['backbone']} backbone", "",
             f"Grid per model: learning rate {a['learning_rates']} x weight decay "
             f"{a['weight_decays']} ({len(a['learning_rates']) * len(a['weight_decays'])} "
             "configurations), "
             f"epoch chosen by validation Recall@20 within each run; grid seeds "
             f"{a['grid_seeds']}, the best configuration (mean validation Recall@20) re-run on "
             f"seeds {a['final_seeds']}. Extra flags: `{' '.join(payload['extra_flags']) or '-'}`.",
             "", "| model | best config | best epochs | val R@20 | test R@20 | test N@20 | "
             "test R@10 | test N@10 |", "|---|---|---|---|---|---|---|---|"]
    for label, res in payload["models"].items():
        cells = " | ".join(f"{res['test'][m]['mean']:.4f} ± {res['test'][m]['std']:.4f}"
                           for m in METRICS)
        lines.append(f"| {label} | {res['best_config']} | {res['best_epoch']} | "
                     f"{res['val']['recall@20']['mean']:.4f} | {cells} |")
    lines += ["", "Validation Recall@20 of every configuration (mean over grid seeds):", "",
              "| model | " + " | ".join(g["config"] for g in
                                        next(iter(payload["models"].values()))["grid"]) + " |",
              "|---" * (1 + len(a["learning_rates"]) * len(a["weight_decays"])) + "|"]
    for label, res in payload["models"].items():
        lines.append(f"| {label} | " + " | ".join(f"{g['val_recall@20']['mean']:.4f}"
                                                  for g in res["grid"]) + " |")
    lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--backbone", default="gcn")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--grid_seeds", default="0,1,2")
    parser.add_argument("--final_seeds", default="0,1,2")
    parser.add_argument("--root", default="workdirs/metammf_tuning")
    parser.add_argument("--extra", default="", help="extra flags, e.g. --config.num_epochs=30")
    parser.add_argument("--out", default=os.path.join(HERE, "..", "results", "metammf_tuning"))
    parser.add_argument("--learning_rates", default=",".join(map(str, LEARNING_RATES)))
    parser.add_argument("--weight_decays", default=",".join(map(str, WEIGHT_DECAYS)))
    parser.add_argument("--render_only", action="store_true")
    args = parser.parse_args()
    args.learning_rates = [float(v) for v in args.learning_rates.split(",")]
    args.weight_decays = [float(v) for v in args.weight_decays.split(",")]
    if args.render_only:
        payload = read_payload(args.out)
    else:
        args.grid_seeds = [int(s) for s in args.grid_seeds.split(",")]
        args.final_seeds = [int(s) for s in args.final_seeds.split(",")]
        extra = args.extra.split() if args.extra else []
        payload = {"args": {k: v for k, v in vars(args).items() if k != "render_only"},
                   "extra_flags": extra,
                   "models": {label: run_model(label, args, extra)
                              for label in args.models.split(",")}}
        write_payload(args.out, payload)
    write_markdown(args.out, render(payload))


if __name__ == "__main__":
    main()
