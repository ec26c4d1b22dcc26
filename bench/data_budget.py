"""How much data does network recovery need?  (The seed paper's open question, Ji et al. 2021 section 4.)

Recovery of the true network (Pearson r of W over all n^2 entries, AUROC of |W| as edge scores) and the test MAE
(against the noise-free responses), as one data-budget factor varies around a base design while the others stay
at the base (one factor at a time, not the full factorial):

- perturbed nodes per condition: at most 1, 2 (base) or 3 (config key ``max_targets``; each condition perturbs
  k nodes, k uniform in 1..max);
- observation time points: 1, 2, 5 (base) or 10 (t_k = 20 k / T);
- conditions: 10, 30 (base) or 100 (train/val/test 4/6, 1/6, 1/6 of them);

on three networks of different size: LI (7 nodes), GSD (19) and random:40 (40 nodes, 3 regulators each; a new
seeded random network per seed), three seeds each (the seed drives the data, the split and the initialisation).
Every fit goes through ``cellbox-nb sweep``: this script writes the spec (one row per fit), runs the sweep, and
reads its summary.

Usage:  python bench/data_budget.py [--work DIR] [--workers 2] [--epochs 1500] [--seeds 0,1,2]
                                    [--networks LI,GSD,random:40] [--jsonl FILE] [--markdown FILE] [--figure FILE]
A rerun with the same --work reuses the finished fits (the sweep skips them).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

CLI = [sys.executable, "-m", "cellbox_nb._cli.main"]
BASE_DESIGN = {"max_targets": 2, "times": 5, "conditions": 30}
FACTORS = {"max_targets": [1, 2, 3], "times": [1, 2, 5, 10], "conditions": [10, 30, 100]}
LABELS = {"max_targets": "perturbed nodes (at most)", "times": "time points", "conditions": "conditions"}
# MAE loss and Adam with the plateau schedule (the defaults), early stopping after 200 epochs without improvement
TRAIN = {"loss": "mae", "noise": 0.01, "tfinal": 20.0, "checkpoint_seconds": 30.0}
METRICS = (("pearson_W", "r(W)"), ("auroc", "AUROC"), ("mae_test", "test MAE"))


def designs():
    """The distinct designs: the base, then each factor's other levels (one factor at a time)."""
    out = [dict(BASE_DESIGN)]
    for key, levels in FACTORS.items():
        for level in levels:
            d = dict(BASE_DESIGN, **{key: level})
            if d not in out:
                out.append(d)
    return out


def spec(networks, seeds, epochs):
    fits = [{"network": net, **d, "data_seed": s, "split_seed": s, "seed": s}
            for net in networks for d in designs() for s in seeds]
    return {"base": dict(TRAIN, epochs=epochs), "fits": fits}


def run_sweep(spec_path, out, workers):
    cmd = CLI + ["sweep", spec_path, "--out", out, "--workers", str(workers), "--json"]
    print("$ " + " ".join(["cellbox-nb"] + cmd[3:]), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if res.returncode not in (0, 4):  # 4: some fit ended in a numerical failure (a result, kept in the table)
        sys.exit(f"cellbox-nb sweep failed with exit code {res.returncode}")
    return json.loads(res.stdout), wall


def table(rows, networks):
    """Markdown: per network and factor level, the median over seeds with [min, max]."""
    lines = ["| network (n) | factor | level | fits | r(W) | AUROC | test MAE | wall s (median) |",
             "|---|---|---|---|---|---|---|---|"]
    for net in networks:
        mine = [r for r in rows if r["network"] == net]
        n = mine[0]["n"] if mine else "?"
        for key, levels in FACTORS.items():
            for level in levels:
                sel = [r for r in mine if r[key] == level and all(r[k] == v for k, v in BASE_DESIGN.items()
                                                                    if k != key)]
                cells = []
                for metric, _ in METRICS:
                    vals = np.array([r[metric] for r in sel if r[metric] is not None], dtype=float)
                    fmt = "{:.3g}" if metric == "mae_test" else "{:.3f}"
                    cells.append("n/a" if vals.size == 0 else
                                 f"{fmt.format(np.median(vals))} [{fmt.format(vals.min())}, {fmt.format(vals.max())}]")
                wall = np.median([r["wall_s"] for r in sel if r["wall_s"] is not None]) if sel else float("nan")
                base = " (base)" if level == BASE_DESIGN[key] else ""
                lines.append(f"| {net} ({n}) | {LABELS[key]} | {level}{base} | {len(sel)} | " + " | ".join(cells)
                             + f" | {wall:.1f} |")
    return "\n".join(lines)


def figure(rows, networks, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(len(METRICS), len(FACTORS), figsize=(12, 9), squeeze=False)
    for j, (key, levels) in enumerate(FACTORS.items()):
        for i, (metric, label) in enumerate(METRICS):
            ax = axes[i][j]
            for net in networks:
                med, lo, hi = [], [], []
                for level in levels:
                    vals = [r[metric] for r in rows if r["network"] == net and r[key] == level and r[metric] is not None
                            and all(r[k] == v for k, v in BASE_DESIGN.items() if k != key)]
                    vals = np.array(vals, dtype=float)
                    med.append(np.median(vals) if vals.size else np.nan)
                    lo.append(vals.min() if vals.size else np.nan)
                    hi.append(vals.max() if vals.size else np.nan)
                med, lo, hi = map(np.array, (med, lo, hi))
                ax.errorbar(levels, med, yerr=[med - lo, hi - med], marker="o", capsize=3, label=net)
            if key in ("times", "conditions"):
                ax.set_xscale("log")
            ax.set_xticks(levels)
            ax.set_xticklabels([str(v) for v in levels])
            if metric == "mae_test":
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            if i == len(METRICS) - 1:
                ax.set_xlabel(LABELS[key])
            if j == 0:
                ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[0][0].legend(title="network")
    fig.suptitle("Recovery vs data budget (median and range over 3 seeds; other factors at the base: "
                 "at most 2 perturbed nodes, 5 time points, 30 conditions)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "cellbox_data_budget"),
                    help="folder for the spec and the sweep's results files (reused by a rerun)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1500)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--networks", default="LI,GSD,random:40")
    ap.add_argument("--jsonl", default=os.path.join("bench", "results", "data_budget.jsonl"))
    ap.add_argument("--markdown", default=None, help="also write the table here")
    ap.add_argument("--figure", default=os.path.join("docs", "data_budget.png"))
    args = ap.parse_args()
    networks = args.networks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.work, exist_ok=True)
    spec_path = os.path.join(args.work, "data_budget.yaml")
    with open(spec_path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(spec(networks, seeds, args.epochs), fh, sort_keys=False)
    report, wall = run_sweep(spec_path, os.path.join(args.work, "sweep"), args.workers)
    with open(report["summary"]["json"], encoding="utf-8") as fh:
        summary = json.load(fh)["rows"]
    fits = spec(networks, seeds, args.epochs)["fits"]
    from cellbox_nb.data.network import load_network

    sizes = {net: load_network(net).n for net in networks}
    machine = {"machine": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
               "date": time.strftime("%Y-%m-%d"), "sweep_wall_s": round(wall, 1), "workers": args.workers,
               "epochs_max": args.epochs}
    rows = []
    for fit, s in zip(fits, summary):
        row = {"network": fit["network"], "n": sizes[fit["network"]], **{k: fit[k] for k in FACTORS},
               "seed": fit["seed"], "status": s["status"], "action": s["action"]}
        row.update({k: s.get(k) for k in ("pearson_W", "auroc", "aupr", "mae_test", "epochs", "best_epoch", "wall_s")})
        rows.append(dict(row, **machine))
    os.makedirs(os.path.dirname(args.jsonl) or ".", exist_ok=True)
    with open(args.jsonl, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    text = table(rows, networks)
    print(text)
    print(f"\n{len(rows)} fits ({report['status']}), sweep wall {wall:.0f} s on {args.workers} workers", file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if args.figure:
        figure(rows, networks, args.figure)
        print(f"wrote {args.figure}", file=sys.stderr)


if __name__ == "__main__":
    main()
