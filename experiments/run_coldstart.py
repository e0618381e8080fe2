"""Cold-start table: items held out with all their interactions, ranked from content alone.

Every model x dataset x seed is `experiments/train_metammf.py` with `config.data.cold_items`
(default 0.2) in its own process and workdir (finished runs are skipped, unfinished ones resume).
Reports cold-start Recall@20 / NDCG@20 (each user who interacted with a cold item ranks the cold
items among themselves; `metammf/coldstart.py`) and the warm test Recall@20, mean ± std over seeds.
Writes results/coldstart.{json,md}.

    nice -n 10 python experiments/run_coldstart.py --datasets=synthetic,ml100k --seeds=0,1,2
"""
import argparse
import json
import os
import statistics
import sys

from run_metammf_table import train_once  # experiments/ is on sys.path when run as a script

# Table rows: label -> config suffixes (see configs/metammf.py).
ROWS = {
    "MetaMMF_GCN (dense)": "model=metammf,fusion=dense,backbone=gcn",
    "MetaMMF_GCN (cp)": "model=metammf,fusion=cp,backbone=gcn",
    "static fusion GCN": "model=metammf,fusion=static,backbone=gcn",
    "VBPR": "model=vbpr",
    "popularity": "model=popularity",
    "random": "model=random",
}
COLUMNS = (("cold", "recall@20"), ("cold", "ndcg@20"), ("cold", "recall@10"),
           ("test", "recall@20"))
HERE = os.path.dirname(os.path.abspath(__file__))


def run(dataset, label, seed, root, cold, extra, collect_only=False):
    """The results dict of one run (trained first unless finished), or None with collect_only
    when it has not finished."""
    name = label.replace(" ", "_").replace("(", "").replace(")", "")
    workdir = os.path.join(root, dataset, f"cold{cold}", name, f"seed{seed}")
    results = os.path.join(workdir, "results.json")
    if not os.path.exists(results) and collect_only:
        return None
    return train_once(f"{dataset},{ROWS[label]},seed={seed}",
                      [f"--config.data.cold_items={cold}", f"--config.data.seed={seed}",
                       "--config.figures=False"] + list(extra), workdir)


def summarise(values):
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def write(table, args, seeds, extra):
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"cold_items": args.cold_items, "extra_flags": extra, "table": table}, f,
                  indent=2)
    names = [f"{split} {metric}" for split, metric in COLUMNS]
    lines = []
    for dataset, rows in table.items():
        first = next(iter(rows.values()))
        lines += [f"### {dataset}: {args.cold_items:.0%} of items cold ({first['n_cold_items']} "
                  f"items, {first['n_cold_users']} users with a cold item; mean ± std over "
                  f"seeds {seeds})", "",
                  "| model | " + " | ".join(names) + " | mean run s |",
                  "|---" * (len(names) + 2) + "|"]
        for label, cell in rows.items():
            vals = " | ".join(f"{cell[n]['mean']:.4f} ± {cell[n]['std']:.4f}" for n in names)
            seeds_note = "" if cell["seeds"] == seeds else f" (seeds {cell['seeds']})"
            lines.append(f"| {label}{seeds_note} | {vals} | "
                         f"{statistics.fmean(cell['time_s']):.0f} |")
        lines.append("")
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="synthetic,ml100k")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--cold_items", type=float, default=0.2)
    parser.add_argument("--root", default="workdirs/coldstart")
    parser.add_argument("--out", default=os.path.join(HERE, "..", "results", "coldstart"))
    parser.add_argument("--extra", default="", help="extra flags, e.g. --config.num_epochs=20")
    parser.add_argument("--collect_only", action="store_true",
                        help="train nothing: tabulate the finished runs (rows list their seeds)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = args.extra.split() if args.extra else []
    table = {}
    for dataset in args.datasets.split(","):
        for label in args.rows.split(","):
            done = [(s, run(dataset, label, s, args.root, args.cold_items, extra,
                             args.collect_only)) for s in seeds]
            done = [(s, r) for s, r in done if r is not None]
            if not done:
                continue
            per_seed = [r for _, r in done]
            cell = {"seeds": [s for s, _ in done], "time_s": [r["timing"]["total_s"] for r in per_seed],
                    "n_cold_items": per_seed[0]["cold"]["n_items"],
                    "n_cold_users": per_seed[0]["cold"]["n_users"]}
            for split, metric in COLUMNS:
                values = [r[split][metric] for r in per_seed]
                mean, std = summarise(values)
                cell[f"{split} {metric}"] = {"mean": mean, "std": std, "values": values}
            table.setdefault(dataset, {})[label] = cell
            print(write(table, args, seeds, extra), flush=True)  # partial tables survive a kill


if __name__ == "__main__":
    main()
