"""Runs the MetaMMF model table: every model x dataset x seed, then a mean/std table.

Each run is `experiments/train_metammf.py` in its own process with its own workdir, so a killed
study resumes (finished runs, i.e. workdirs holding results.json, are skipped; unfinished ones
resume from their orbax checkpoint). Writes results/metammf_table.{json,md}.

    python experiments/run_metammf_table.py --datasets=ml100k,synthetic --seeds=0,1,2 \
        --root=workdirs/metammf_table
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# Table rows: label -> config suffixes (see configs/metammf.py).
ROWS = {
    "MetaMMF_GCN (dense)": "model=metammf,fusion=dense,backbone=gcn",
    "MetaMMF_GCN (cp)": "model=metammf,fusion=cp,backbone=gcn",
    "MetaMMF_MF (dense)": "model=metammf,fusion=dense,backbone=mf",
    "MetaMMF_MF (cp)": "model=metammf,fusion=cp,backbone=mf",
    "static fusion GCN": "model=metammf,fusion=static,backbone=gcn",
    "static fusion MF": "model=metammf,fusion=static,backbone=mf",
    "VBPR": "model=vbpr",
    "LightGCN": "model=lightgcn",
    "MMGCN": "model=mmgcn",
    "LATTICE": "model=lattice",
}
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@10", "hr@20")
HERE = os.path.dirname(os.path.abspath(__file__))


def run(dataset, label, seed, root, extra):
    workdir = os.path.join(root, dataset, label.replace(" ", "_").replace("(", "")
                           .replace(")", ""), f"seed{seed}")
    results = os.path.join(workdir, "results.json")
    if not os.path.exists(results):
        config = f"{os.path.join(HERE, '..', 'configs', 'metammf.py')}:{dataset},{ROWS[label]}"
        cmd = [sys.executable, os.path.join(HERE, "train_metammf.py"),
               f"--config={config},seed={seed}", f"--workdir={workdir}",
               "--config.progress=False"] + extra
        t = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            raise RuntimeError(f"run failed: {' '.join(cmd)}")
        print(f"  {dataset:<10} {label:<22} seed {seed}: {time.time() - t:6.1f} s", flush=True)
    with open(results, encoding="utf-8") as f:
        return json.load(f)


def summarise(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml100k,synthetic")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--root", default="workdirs/metammf_table")
    parser.add_argument("--out", default=os.path.join(HERE, "..", "results", "metammf_table"))
    parser.add_argument("--extra", default="", help="extra flags, e.g. --config.num_epochs=20")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = args.extra.split() if args.extra else []
    table = {}
    for dataset in args.datasets.split(","):
        for label in args.rows.split(","):
            per_seed = [run(dataset, label, s, args.root, extra) for s in seeds]
            cell = {"seeds": seeds, "best_epoch": [r["best_epoch"] for r in per_seed],
                    "time_s": [r["timing"]["total_s"] for r in per_seed]}
            for m in METRICS:
                values = [r["test"][m] for r in per_seed]
                cell[m] = {"mean": summarise(values)[0], "std": summarise(values)[1],
                           "values": values}
            table.setdefault(dataset, {})[label] = cell
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"extra_flags": extra, "table": table}, f, indent=2)
    lines = []
    for dataset, rows in table.items():
        lines += [f"### {dataset} (test, mean ± std over seeds {seeds})", "",
                  "| model | " + " | ".join(METRICS) + " | mean run s |",
                  "|---" * (len(METRICS) + 2) + "|"]
        for label, cell in rows.items():
            vals = " | ".join(f"{cell[m]['mean']:.4f} ± {cell[m]['std']:.4f}" for m in METRICS)
            lines.append(f"| {label} | {vals} | {statistics.fmean(cell['time_s']):.0f} |")
        lines.append("")
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
