"""Meta Fusion on UCI mfeat with all six views (fou, fac, kar, pix, zer, mor), 5 seeds.

Runs `experiments/train_metafusion.py` once (the `mfeat` variant with
`--config.data.views=...`, per-view PCA dims `MOD_OUTS`, no full-width members, both B1 arms
reported) and writes results/metafusion_mfeat6.{json,md}
from its results.json (nothing typed by hand). A finished workdir is not run again.

    python experiments/run_metafusion_mfeat6.py --workdir=workdirs/metafusion_mfeat6
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")   # data/multiview/mfeat.py MFEAT_VIEWS
MOD_OUTS = ((0, 20), (0, 20), (0, 20), (0, 20), (0, 20), (0, 6))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="workdirs/metafusion_mfeat6")
    parser.add_argument("--num_seeds", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "results",
                                                      "metafusion_mfeat6"))
    args = parser.parse_args()
    views = "(" + ", ".join(f"'{v}'" for v in VIEWS) + ")"
    cmd = [sys.executable, os.path.join(HERE, "train_metafusion.py"),
           f"--config={os.path.join(HERE, '..', 'configs', 'metafusion.py')}:mfeat",
           f"--workdir={args.workdir}", f"--config.data.views={views}",
           f"--config.num_seeds={args.num_seeds}", "--config.report_both_b1=True",
           # One latent dim per view (mor is 6 wide: 6 passes it raw), no full-width copies:
           # 2^6 - 1 = 63 members (with add_full, 3^6 - 1 = 728 would not fit a CPU run).
           f"--config.cohort.mod_outs={MOD_OUTS}",
           f"--config.cohort.mod_hiddens={tuple(() for _ in VIEWS)}",
           "--config.cohort.add_full=False"]
    results_path = os.path.join(args.workdir, "results.json")
    if not os.path.exists(results_path):
        t = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr[-4000:], file=sys.stderr)
            raise RuntimeError(f"run failed: {' '.join(cmd)}")
        print(f"ran in {time.time() - t:.0f} s")
    with open(results_path, encoding="utf-8") as f:
        results = json.load(f)
    test = dict(results["test"])
    arms = [(results["config"]["warm_start_b1"], test)]
    if "b1_arm" in results:
        arms.append((results["b1_arm"]["warm_start_b1"], dict(test, **results["b1_arm"]["test"])))
    methods = [k for k in test if not k.endswith("_se") and f"{k}_se" in test]
    lines = [f"### Meta Fusion on UCI mfeat, all six views {list(VIEWS)}, "
             f"{args.num_seeds} seeds (test accuracy, mean (standard error))", "",
             "| B1 warm start | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for warm, arm in sorted(arms, key=lambda a: a[0]):
        cells = " | ".join(f"{arm[m]:.3f} ({arm[m + '_se']:.3f})" if m in arm else "-"
                           for m in methods)
        lines.append(f"| {'on' if warm else 'off'} | {cells} |")
    shown = " ".join(os.path.relpath(c) if c.endswith(".py") else c for c in cmd[1:])
    lines += ["", f"Command: `{shown}`",
              f"Wall time: {results['timing'].get('total_s', float('nan')):.0f} s.", ""]
    payload = {"command": cmd[1:], "results": results}
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, default=str)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
