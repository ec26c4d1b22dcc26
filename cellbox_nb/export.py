"""Export a fit's results file as plain CSV/JSON files for spreadsheets, R or pandas.

:func:`export_csv` writes, into one folder:

- ``W.csv``           the n x n interaction matrix with the node names as header and index, rows = targets
                      and columns = regulators (``W[i, j]`` = effect of node j on node i, the layout of CellBox's
                      ``best.W``); the top-left cell is empty.
- ``alpha.csv``, ``d.csv``  ``node,value``: the gains and the decay rates.
- ``predictions.csv`` long format, one row per (condition, time, node), M * T * n rows:
                      ``condition, split, time, node, predicted, measured, observed`` (split is train, val,
                      test, or ``none`` for a condition in no split; measured is empty where the data has no
                      finite value; observed is 1 or 0).
- ``metrics.json``    the metrics stored with the fit, for the exported parameters (with ``which="final"`` the
                      errors and recovery metrics are recomputed), ``params`` (best or final) and ``status``, the
                      file's (``running`` while prune refits are still to come); ``{"status": ...}`` only for a fit
                      whose first stage has not ended.
- ``history.csv``     one row per epoch: epoch, train_loss, val_loss, lr, grad_norm, rejected, wall_s.
- after prune and refit only (config key ``prune``; an export of another fit into the folder removes them):
  ``prune.csv``, one row per candidate, the unpruned fit
  first: candidate, level, support, train_loss, val_loss, criterion, epochs, chosen (1 for the selected one;
  empty cells for values that could not be evaluated); and ``W_unpruned.csv``, the fit's own best W before
  pruning, laid out like ``W.csv``.

Floating-point values are written with Python's ``repr``, so they read back to the same float64 bits.
``which="best"`` (default) exports the parameters with the best validation loss, ``which="final"`` those of the
last epoch; the predictions belong to the chosen parameters.
"""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np

from .data.h5atomic import all_or_none
from .errors import ConfigError
from .fit.store import HISTORY_COLUMNS, read_fit

PRUNE_FILES = ("prune.csv", "W_unpruned.csv")  # written for a fit with prune and refit only

__all__ = ["export_csv", "model_predictions", "split_labels"]

WHICH = ("best", "final")
SPLIT_NAMES = ("train", "val", "test")


def _check_which(which):
    if which not in WHICH:
        raise ConfigError(f"which: must be 'best' or 'final', got {which!r}")


def split_labels(fit) -> list[str]:
    """The split name (train, val, test, or none) of every condition of a fit read by ``read_fit``."""
    labels = ["none"] * fit["dataset"].M
    for name, idx in zip(SPLIT_NAMES, fit["split"]):
        for i in np.asarray(idx, dtype=np.int64):
            labels[int(i)] = name
    return labels


def model_predictions(fit, which="best", t=None, conditions=None):
    """Model responses (len(conditions), len(t), n) with the ``which`` parameters of a fit read by ``read_fit``.

    With the defaults (all conditions at the observation times) and ``which="best"`` the stored predictions are
    returned when the file has them; otherwise the model is solved on the CPU with the fit's tolerances
    (conditions whose solve fails are NaN).
    """
    _check_which(which)
    ds = fit["dataset"]
    if t is None and conditions is None and which == "best" and fit["predictions"] is not None:
        return np.asarray(fit["predictions"], dtype=np.float64)
    from .api import solve

    params = fit[which]
    idx = np.arange(ds.M) if conditions is None else np.asarray(conditions, dtype=np.int64)
    times = ds.t if t is None else np.asarray(t, dtype=np.float64)
    cfg = fit["config"]
    return solve(params["W"], params["alpha"], ds.U[idx], times, rtol=cfg.get("rtol", 1e-6),
                 atol=cfg.get("atol", 1e-8), decay=params.get("d"), on_failure="nan", backend="cpu")


def _num(x) -> str:
    """A float as its shortest round-tripping text (``repr``)."""
    return repr(float(x))


def _write_rows(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def export_csv(fit_path, out_dir, *, which="best") -> list[str]:
    """Write a fit's parameters, predictions, metrics and history as CSV/JSON files into ``out_dir``.

    Parameters
    ----------
    fit_path : path of a results file (``cellbox-nb train --out``).
    out_dir : folder to write into (created if missing; existing files of the same names are replaced).
    which : ``"best"`` (default) or ``"final"`` parameters.

    Returns
    -------
    list of the written file paths, in the order W.csv, alpha.csv, d.csv, predictions.csv, metrics.json,
    history.csv (then prune.csv and W_unpruned.csv for a fit with prune and refit).

    Raises
    ------
    InputDataError if the file is not a readable results file; ConfigError for a bad ``which`` or an output
    folder that cannot be created.
    """
    _check_which(which)
    fit = read_fit(fit_path)
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"output folder '{out_dir}' is a file")
    os.makedirs(out_dir, exist_ok=True)
    with all_or_none() as files:  # every file complete before any replaces an older one
        _export_files(fit, which, out_dir, files)
    return files.finals


def _export_files(fit, which, out_dir, files):
    """Write export_csv's files into the temporaries of ``files`` (a data.h5atomic.FileSet)."""
    ds = fit["dataset"]
    nodes = list(fit["nodes"])
    params = fit[which]

    def target(name):
        return files.reserve(os.path.join(out_dir, name))

    def write_matrix(name, M):
        M = np.asarray(M, dtype=np.float64)
        _write_rows(target(name), [""] + nodes, ([nodes[i]] + [_num(v) for v in M[i]] for i in range(len(nodes))))

    write_matrix("W.csv", params["W"])
    for key in ("alpha", "d"):
        vec = np.asarray(params.get(key, np.ones(len(nodes))), dtype=np.float64)
        _write_rows(target(f"{key}.csv"), ["node", "value"], ([nodes[i], _num(v)] for i, v in enumerate(vec)))

    X = model_predictions(fit, which)
    Y = ds.Y
    obs = ds.observed()
    splits = split_labels(fit)
    times = [_num(v) for v in ds.t]

    def prediction_rows():
        for c in range(ds.M):
            cname, sname = ds.conditions[c], splits[c]
            Xc, Yc, Oc = X[c], Y[c], obs[c]
            for k in range(ds.T):
                for i in range(ds.n):
                    y = float(Yc[k, i])
                    yield (cname, sname, times[k], nodes[i], _num(Xc[k, i]), _num(y) if math.isfinite(y) else "",
                           1 if Oc[k, i] else 0)

    _write_rows(target("predictions.csv"),
                ["condition", "split", "time", "node", "predicted", "measured", "observed"], prediction_rows())

    metrics = dict(fit["metrics"] or {})
    if which == "final" and fit["metrics"] is not None:  # the stored metrics are the best parameters': recompute
        from .fit.train import evaluate  # those that depend on the parameters for the final ones

        metrics.update(evaluate(ds, tuple(fit["split"]), params, X, fit["config"].get("loss", "mae")))
    metrics["params"] = which
    metrics["status"] = fit["status"]  # (the stored metrics' status is the fit's, before any prune refits)
    metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    with open(target("metrics.json"), "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2, sort_keys=True, allow_nan=False, default=str)
        fh.write("\n")

    hist = fit["history"]
    rows = len(hist["epoch"])

    def history_rows():
        for r in range(rows):
            row = []
            for col in HISTORY_COLUMNS:
                v = float(hist[col][r])
                row.append(str(int(v)) if col in ("epoch", "rejected") and v.is_integer() else _num(v))
            yield row

    _write_rows(target("history.csv"), list(HISTORY_COLUMNS), history_rows())

    pr = fit.get("prune")
    if pr is not None:
        def cell(v):
            return _num(v) if math.isfinite(float(v)) else ""

        _write_rows(target("prune.csv"),
                    ["candidate", "level", "support", "train_loss", "val_loss", "criterion", "epochs", "chosen"],
                    ([j, _num(pr["levels"][j]), int(pr["support"][j]), cell(pr["train_loss"][j]),
                      cell(pr["val_loss"][j]), cell(pr["criterion"][j]), int(pr["epochs"][j]),
                      1 if j == pr["chosen"] else 0] for j in range(len(pr["levels"]))))
        write_matrix("W_unpruned.csv", pr["stage1"]["W"])
    else:  # an earlier export of a pruned fit into this folder must not leave its files beside these
        for name in PRUNE_FILES:
            files.discard(os.path.join(out_dir, name))
