"""Runs the MetaMMF model table: every model x dataset x seed, then a mean/std table.

Each run is `experiments/train_metammf.py` in its own process with its own workdir, so a killed
study resumes (finished runs, i.e. workdirs holding results.json, are skipped; unfinished ones
resume from their orbax checkpoint). Writes results/metammf_table.{json,md} (or --out), the .md
from the .json only.

    python experiments/run_metammf_table.py --datasets=synthetic --seeds=0,1,2 \
        --out=results/metammf_table_synthetic
    python experiments/run_metammf_table.py --datasets=ml100k --extra=--config.num_epochs=30 \
        --out=results/metammf_table_ml100k

--reuse=OLD.json --reuse_rows=A,B takes rows A, B from an earlier table JSON (same dataset, same
protocol, model code unchanged since) instead of running them; the table notes say which.
`--render_only` rewrites the .md from the .json without running anything.
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
    "FREEDOM": "model=freedom",
    "popularity": "model=popularity",
    "random": "model=random",
}
# Flags a row adds to every run ({seed}: the run's seed). The floors do not learn: one epoch.
ROW_FLAGS = {
    "popularity": ("--config.num_epochs=1", "--config.eval_every=1"),
    "random": ("--config.num_epochs=1", "--config.eval_every=1",
               "--config.model.random.seed={seed}"),
}
# Workdir names of rows whose model changed since earlier tables (old workdirs are not reused).
WORKDIR_NAMES = {"MMGCN": "MMGCN_paper", "LATTICE": "LATTICE_paper"}
# What each row is: protocol and simplifications (metammf/*.py docstrings have the details).
NOTES = {
    "MetaMMF_GCN (dense)": "MetaMMF, GCN backbone, dense meta layers (Liu et al., TOIS 2023).",
    "MetaMMF_GCN (cp)": "MetaMMF, GCN backbone, CP-decomposed meta layers.",
    "MetaMMF_MF (dense)": "MetaMMF, MF backbone, dense meta layers.",
    "MetaMMF_MF (cp)": "MetaMMF, MF backbone, CP meta layers.",
    "static fusion GCN": "ablation: MetaMMF with W_i = M (no item-specific fusion), GCN.",
    "static fusion MF": "ablation: static fusion, MF backbone.",
    "VBPR": "VBPR (He & McAuley, AAAI 2016), all modalities as the content features.",
    "LightGCN": "LightGCN (He et al., SIGIR 2020), ids only, 3 layers.",
    "MMGCN": "MMGCN (Wei et al., MM 2019): per-modality aggregation + concat combination, 3 "
             "layers, trained P_k and id embeddings (paper; MMRec freezes them), modalities "
             "summed.",
    "LATTICE": "LATTICE (Zhang et al., MM 2021): learned kNN graphs of transformed features "
               "mixed with the initial kNN graph (lambda 0.9), learned modality weights; graph "
               "rebuilt every step (code: every epoch); weight decay instead of its embedding "
               "reg.",
    "FREEDOM": "FREEDOM (Zhou & Shen, MM 2023): frozen kNN item graph, degree-sensitive "
               "pruning of 80% of user-item edges per step (code: per epoch); without its "
               "modality BPR term (lambda = 0 of its grid), uniform modality weights.",
    "popularity": "floor: train interaction count of the item, the same for every user.",
    "random": "floor: a fixed random score per (user, item), a uniformly random ranking.",
}
COMMON_NOTE = ("All rows: our protocol (BPR with one resampled negative per pair, Adam, "
               "the config's learning rate and weight decay, validation Recall@20 selects the "
               "epoch, test evaluated once at it; full ranking with train (and, at test, "
               "validation) items masked), not MMRec's (1000 epochs, patience 20, per-model "
               "grids selected on test).")
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@10", "hr@20")
HERE = os.path.dirname(os.path.abspath(__file__))


def run(dataset, label, seed, root, extra):
    name = WORKDIR_NAMES.get(label, label.replace(" ", "_").replace("(", "").replace(")", ""))
    workdir = os.path.join(root, dataset, name, f"seed{seed}")
    extra = list(extra) + [f.format(seed=seed) for f in ROW_FLAGS.get(label, ())]
    return train_once(f"{dataset},{ROWS[label]},seed={seed}", extra, workdir)


def train_once(config_arg, flags, workdir):
    """results.json of one train_metammf.py run (run unless workdir already holds it); the other
    study scripts (tuning, protocol, cold start) run theirs through this too."""
    results = os.path.join(workdir, "results.json")
    if not os.path.exists(results):
        cmd = [sys.executable, os.path.join(HERE, "train_metammf.py"),
               f"--config={os.path.join(HERE, '..', 'configs', 'metammf.py')}:{config_arg}",
               f"--workdir={workdir}", "--config.progress=False"] + list(flags)
        t = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            raise RuntimeError(f"run failed: {' '.join(cmd)}")
        print(f"  {workdir}: {time.time() - t:6.1f} s", flush=True)
    with open(results, encoding="utf-8") as f:
        return json.load(f)


def read_payload(out):
    """OUT.json of a study (what `--render_only` re-renders)."""
    with open(out + ".json", encoding="utf-8") as f:
        return json.load(f)


def write_payload(out, payload):
    """OUT.json of a study (its folder created)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)


def write_markdown(out, text):
    """OUT.md of a study, rendered from its JSON, also printed."""
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


def summarise(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def cell_of(per_seed, seeds):
    cell = {"seeds": seeds, "best_epoch": [r["best_epoch"] for r in per_seed],
            "time_s": [r["timing"]["total_s"] for r in per_seed]}
    for m in METRICS:
        values = [r["test"][m] for r in per_seed]
        mean, std = summarise(values)
        cell[m] = {"mean": mean, "std": std, "values": values}
    return cell


def render(payload):
    """The markdown table of a table JSON (nothing typed by hand)."""
    lines = []
    for dataset, rows in payload["table"].items():
        seeds = next(iter(rows.values()))["seeds"]
        lines += [f"### {dataset} (test, mean ± std over seeds {seeds})", "",
                  "| model | " + " | ".join(METRICS) + " | mean run s |",
                  "|---" * (len(METRICS) + 2) + "|"]
        for label, cell in rows.items():
            vals = " | ".join(f"{cell[m]['mean']:.4f} ± {cell[m]['std']:.4f}" for m in METRICS)
            mark = " (reused)" if cell.get("reused_from") else ""
            lines.append(f"| {label}{mark} | {vals} | {statistics.fmean(cell['time_s']):.0f} |")
        lines += ["", COMMON_NOTE, ""]
        if payload.get("extra_flags"):
            lines += [f"Extra flags of every run: `{' '.join(payload['extra_flags'])}`.", ""]
        for label, cell in rows.items():
            note = NOTES.get(label, "")
            if cell.get("reused_from"):
                note += (f" Numbers reused from {cell['reused_from']} (same protocol; this "
                         "model's code unchanged since).")
            lines.append(f"- {label}: {note}")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml100k,synthetic")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--root", default="workdirs/metammf_table")
    parser.add_argument("--out", default=os.path.join(HERE, "..", "results", "metammf_table"))
    parser.add_argument("--extra", default="", help="extra flags, e.g. --config.num_epochs=20")
    parser.add_argument("--reuse", default="", help="an earlier table JSON to take rows from")
    parser.add_argument("--reuse_rows", default="", help="labels of the rows to take from it")
    parser.add_argument("--render_only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        write_markdown(args.out, render(read_payload(args.out)))
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = args.extra.split() if args.extra else []
    reused = {}
    if args.reuse:
        with open(args.reuse, encoding="utf-8") as f:
            old = json.load(f)
        if old.get("extra_flags", []) != extra:
            raise ValueError(f"--reuse {args.reuse} ran with extra flags {old.get('extra_flags')}"
                             f", this table with {extra}: the rows would not be comparable.")
        reused = {(d, label): cell for d, rows in old["table"].items()
                  for label, cell in rows.items()
                  if label in args.reuse_rows.split(",")}
    table = {}
    for dataset in args.datasets.split(","):
        for label in args.rows.split(","):
            if (dataset, label) in reused:
                cell = dict(reused[dataset, label], reused_from=os.path.basename(args.reuse))
            else:
                cell = cell_of([run(dataset, label, s, args.root, extra) for s in seeds], seeds)
            table.setdefault(dataset, {})[label] = cell
    payload = {"extra_flags": extra, "table": table}
    write_payload(args.out, payload)
    write_markdown(args.out, render(payload))


if __name__ == "__main__":
    main()
