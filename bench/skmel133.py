"""SK-MEL-133 (Yuan et al. 2020): test Pearson r of cellbox-nb fits under the CellBox partitions.

- random partition with the original's sizes (89 conditions: 49 train / 13 validation / 27 test, one fixed split):
  one model per seed, and the ensemble that averages the seeds' test predictions;
- leave one drug out with the drug's singles in training (``loo_with_singles``), for a few drugs: Pearson r of
  the held-out combinations, one model (or an ensemble over ``--loo-seeds``) per drug.

Pearson r is computed over all test entries (conditions x 99 nodes) of predicted vs measured responses, as
CellBox's manuscript notebooks do. Published reference points (shared/notes/cellbox-anchors.md section 3): random
partition r 0.926 for test predictions averaged over 929 models (each on its own random partition), single-model
median 0.903; leave-one-drug-out with singles mean 0.935 over the 12 drugs (range 0.866-0.964).

Training settings (TRAIN below): the CellBox model (its W mask, learned decay, squared-error loss), Adam with the
plateau schedule, batches of 8 conditions, L1 0.01 (proximal) and L2 1e-4 on W as in CellBox's first substage,
early stopping on the validation loss (patience 100 epochs), best parameters by validation loss.

Usage:  python bench/skmel133.py [--seeds 0,1,2,3,4] [--drugs aMEK,aPI3K,aBRAFm,amTOR|all] [--loo-seeds 0]
                                 [--protocols loo_with_singles,loo,single_to_combo] [--set key=value ...]
                                 [--markdown FILE]
Prints one JSON line per fit and per ensemble, a summary line, then a Markdown table.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings

import numpy as np

from cellbox_nb.data import load_data
from cellbox_nb.data.cellbox_format import CellboxDataWarning
from cellbox_nb.fit import metrics as mt
from cellbox_nb.fit.config import parse_set, resolve
from cellbox_nb.fit.train import train

TRAIN = {"cellbox_masks": True, "learn_decay": True, "loss": "mse", "lr": 0.01, "batch_size": 8, "l1": 0.01,
         "l2": 1e-4, "epochs": 1000, "patience": 100, "burnin": 50, "schedule": "plateau", "lr_patience": 30,
         "checkpoint_seconds": 1e9}
RANDOM_SPLIT = {"partition": "random", "n_val": 13, "n_test": 27, "split_seed": 0}  # CellBox's 0.7 / 0.8 on 89


def fit(ds, cfg):
    """Train one model; return (metrics, predictions (M, T, n), split)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(ds, cfg, os.path.join(tmp, "fit.h5"))
        wall = time.perf_counter() - t0
    m = dict(res["metrics"])
    m["wall_s"] = wall
    return m, res["predictions"], res["split"]


def row(kind, m, **extra):
    return {"kind": kind, **extra, "pearson_test": m["pearson_test"], "mae_test": m["mae_test"],
            "mae_train": m["mae_train"], "epochs": m["epochs"], "best_epoch": m["best_epoch"], "status": m["status"],
            "wall_s": m["wall_s"]}


def ensemble_r(ds, preds, test):
    """Pearson r of the seed-averaged test predictions vs the measured test responses."""
    X = np.mean([p[test] for p in preds], axis=0)
    return mt.pearson(X.ravel(), ds.Y[test].ravel())


def markdown(rows):
    out = ["| protocol | test set | models | Pearson r (test) | published (CellBox) | epochs | wall s |",
           "|---|---|---|---|---|---|---|"]
    singles = [r for r in rows if r["kind"] == "random_single"]
    if singles:
        rs = [r["pearson_test"] for r in singles]
        out.append(f"| random partition, single model | 27 conditions | {len(rs)} seeds | median {np.median(rs):.3f} "
                   f"(range {min(rs):.3f}-{max(rs):.3f}) | median 0.903 (n = 31) | "
                   f"{np.median([r['epochs'] for r in singles]):.0f} | "
                   f"{np.median([r['wall_s'] for r in singles]):.0f} per model |")
    for r in rows:
        if r["kind"] == "random_ensemble":
            out.append(f"| random partition, ensemble | 27 conditions | {r['models']} seeds, predictions averaged | "
                       f"{r['pearson_test']:.3f} | 0.926 (929 models, many partitions) | | |")
    for kind, label, published in PROTOCOLS:
        loo = [r for r in rows if r["kind"] == kind]
        for r in loo:
            models = f"{r['models']} seed{'s' if r['models'] > 1 else ''}"
            what = f"leave {r['drug']} out, {label}" if kind != "single_to_combo" else "single drugs -> combinations"
            out.append(f"| {what} | {r['n_test']} conditions | {models} | {r['pearson_test']:.3f} | {published} | "
                       f"{r['epochs']:.0f} | {r['wall_s']:.0f} |")
        if len(loo) > 1:
            out.append(f"| **{label}: mean of {len(loo)} drugs** | | | **{np.mean([r['pearson_test'] for r in loo]):.3f}**"
                       f" | {published} | | |")
    return "\n".join(out)


# (kind, label, published reference: CellBox manuscript Figure 3, 12-drug means; anchors section 3)
PROTOCOLS = [("loo_with_singles", "singles in training", "12-drug mean 0.935 (0.866-0.964)"),
             ("loo", "without its singles", "12-drug mean 0.780 (0.549-0.891)"),
             ("single_to_combo", "", "mean 0.924 (0.902-0.954)")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4", help="random partition: one model per seed (init, batch order)")
    ap.add_argument("--drugs", default="aMEK,aPI3K,aBRAFm,amTOR", help="loo_with_singles: left-out drugs ('' = none)")
    ap.add_argument("--loo-seeds", default="0", help="loo_with_singles: seeds per drug (predictions averaged)")
    ap.add_argument("--protocols", default="loo_with_singles",
                    help="drug protocols to run per drug: loo_with_singles, loo; and/or single_to_combo")
    ap.add_argument("--set", nargs="*", default=[], help="training config overrides key=value")
    ap.add_argument("--markdown", default=None, help="also write the Markdown table to this file")
    args = ap.parse_args()
    extra = parse_set(args.set)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CellboxDataWarning)  # the known P6|20 / P6|40 duplicate
        ds = load_data("skmel133")
    rows = []
    t0 = time.perf_counter()

    def emit(r):
        rows.append(r)
        print(json.dumps(r), flush=True)

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    preds, test = [], None
    for seed in seeds:
        cfg = resolve(TRAIN, RANDOM_SPLIT, {"seed": seed}, extra)
        m, X, split = fit(ds, cfg)
        preds.append(X)
        test = split[2]
        emit(row("random_single", m, seed=seed))
    if len(preds) > 1:
        emit({"kind": "random_ensemble", "models": len(preds), "pearson_test": ensemble_r(ds, preds, test),
              "n_test": int(test.size)})

    loo_seeds = [int(s) for s in args.loo_seeds.split(",") if s.strip()]
    drugs = [d for d in args.drugs.split(",") if d.strip()]
    if args.drugs == "all":
        drugs = [ds.nodes[j] for j in np.flatnonzero(np.any(ds.U != 0, axis=0))]
    jobs = []
    for protocol in [p for p in args.protocols.split(",") if p.strip()]:
        if protocol == "single_to_combo":
            jobs.append((protocol, None))
        else:
            jobs += [(protocol, drug) for drug in drugs]
    for protocol, drug in jobs:
        preds, ms = [], []
        for seed in loo_seeds:
            part = {"partition": protocol, "seed": seed}
            if drug is not None:
                part["drug"] = drug
            cfg = resolve(TRAIN, part, extra)
            m, X, split = fit(ds, cfg)
            preds.append(X)
            ms.append(m)
            test = split[2]
        r = row(protocol, ms[0], drug=ms[0].get("drug"), seeds=loo_seeds)
        r.update({"models": len(preds), "n_test": int(test.size), "pearson_test": ensemble_r(ds, preds, test),
                  "pearson_single": [m["pearson_test"] for m in ms],
                  "epochs": float(np.median([m["epochs"] for m in ms])),
                  "wall_s": float(np.sum([m["wall_s"] for m in ms]))})
        emit(r)

    total = time.perf_counter() - t0
    table = markdown(rows)
    print(json.dumps({"total_wall_s": total, "machine": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "loadavg": os.getloadavg(), "train": {**TRAIN, **extra}}))
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(table + f"\n\nTotal wall time: {total:.0f} s\n")


if __name__ == "__main__":
    sys.exit(main())
