"""How much does the protocol move MetaMMF's results? The reference's options next to ours.

Four protocols, same data, model and seeds:
  ours                   one negative per pair, resampled every epoch; validation Recall@20 every
                         `eval_every` epochs picks the epoch (early stopping); test once there
  static negatives       the reference's 5 negatives per pair drawn once (config.negatives =
                         "static", num_negatives = 5); our validation selection
  fixed epochs           our negatives; no validation selection: --epochs epochs, test at the
                         last (eval_every = num_epochs, so validation runs only at the end)
  reference              static 5 negatives and fixed epochs, no selection

    python experiments/run_protocol_study.py --dataset=synthetic --backbone=gcn --seeds=0,1,2 \
        --epochs=40 --out=results/metammf_protocol_synthetic

Writes OUT.json and OUT.md (rendered from the JSON).
"""
import argparse
import os
import statistics

# experiments/ is on sys.path when run as a script
from run_metammf_table import read_payload, train_once, write_markdown, write_payload

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = ("recall@20", "ndcg@20", "recall@10", "ndcg@10")


def protocols(epochs):
    fixed = (f"--config.num_epochs={epochs}", f"--config.eval_every={epochs}",
             "--config.patience=1000")
    static = ("--config.negatives=static", "--config.num_negatives=5")
    return {
        "ours": (f"--config.num_epochs={epochs}",),
        "static negatives (5, drawn once)": (f"--config.num_epochs={epochs}",) + static,
        "fixed epochs, no selection": fixed,
        "reference (static 5 + fixed epochs)": fixed + static,
    }


def stats(values):
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def render(payload):
    a = payload["args"]
    lines = [f"### Protocol study: {a['dataset']}, {a['model']}, {a['backbone']} backbone, "
             f"{a['epochs']} epochs max, seeds {a['seeds']}", "",
             "| protocol | best epochs | test R@20 | test N@20 | test R@10 | test N@10 | "
             "mean run s |", "|---|---|---|---|---|---|---|"]
    for label, res in payload["protocols"].items():
        cells = " | ".join(f"{res['test'][m]['mean']:.4f} ± {res['test'][m]['std']:.4f}"
                           for m in METRICS)
        lines.append(f"| {label} | {res['best_epoch']} | {cells} | "
                     f"{statistics.fmean(res['time_s']):.0f} |")
    lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--model", default="model=metammf,fusion=dense")
    parser.add_argument("--backbone", default="gcn")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--root", default="workdirs/metammf_protocol")
    parser.add_argument("--out", default=os.path.join(HERE, "..", "results", "metammf_protocol"))
    parser.add_argument("--protocols", default="reference,ours,static,fixed",
                        help="which protocols to run, by first word, in this order")
    parser.add_argument("--render_only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        payload = read_payload(args.out)
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
        results = {}
        chosen = {label.split(" ")[0]: (label, flags)
                  for label, flags in protocols(args.epochs).items()}
        for name in args.protocols.split(","):
            label, flags = chosen[name]
            runs = [train_once(f"{args.dataset},{args.model},backbone={args.backbone},seed={s}",
                               flags, os.path.join(args.root, args.dataset, args.backbone,
                                                   args.model.replace(",", "_").replace("=", ""),
                                                   f"{name}_e{args.epochs}", f"seed{s}"))
                    for s in seeds]
            results[label] = {"flags": list(flags), "best_epoch": [r["best_epoch"] for r in runs],
                              "time_s": [r["timing"]["total_s"] for r in runs],
                              "test": {m: stats([r["test"][m] for r in runs]) for m in METRICS}}
            # Written after every protocol: a study cut short keeps what finished.
            payload = {"args": {k: v for k, v in vars(args).items() if k != "render_only"},
                       "protocols": results}
            write_payload(args.out, payload)
    write_markdown(args.out, render(payload))


if __name__ == "__main__":
    main()
