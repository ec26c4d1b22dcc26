"""A visual report of one fit: PNG figures, a Markdown page and an HTML page.

:func:`make_report` reads a results file (``cellbox-nb train --out``) and writes into one folder:

- ``W_heatmap.png``          learned W (best parameters) beside the true W when the data has one; diverging
                             colormap centred at 0 on a common scale; node names on the axes when n <= 40.
- ``trajectory_<iiii>.png``  one per chosen condition (index iiii): the model response x(t) with the best
                             parameters on a fine time grid (``cellbox_nb.solve``) and the measured values at the
                             observation times (markers), for at most 8 nodes (the most responsive ones).
- ``scatter.png``            predicted vs measured over the observed entries, coloured by split, Pearson r per
                             split in the legend.
- ``loss.png``               training and validation loss per epoch (log scale), best epoch marked.
- ``edges_roc_pr.png``       when the data has a true W: ROC and precision-recall curves of the edge scores |W|
                             over the off-diagonal entries against the labels W_true != 0 (AUROC and AUPR from
                             :mod:`cellbox_nb.fit.metrics`).
- ``report.md`` and ``index.html``  one page each: summary, metrics table, the figures (relative links),
                             and the configuration.

The figures are drawn with matplotlib's Agg canvas on ``matplotlib.figure.Figure`` objects: pyplot is never
imported, so neither the global backend nor pyplot's figure registry is touched, and the report works on a
machine without a display. Style settings are applied inside ``matplotlib.rc_context`` only. matplotlib is the
optional extra ``plot`` (``pip install 'cellbox-nb[plot]'``).
"""

from __future__ import annotations

import html
import json
import math
import os
import re

import numpy as np

from .data.h5atomic import all_or_none
from .errors import ConfigError
from .export import model_predictions, split_labels
from .fit import metrics as mt
from .fit.store import read_fit

__all__ = ["make_report", "parse_conditions"]

MISSING_MATPLOTLIB = "the report needs matplotlib: pip install 'cellbox-nb[plot]'"
N_DEFAULT_CONDITIONS = 3   # test conditions shown by default
MAX_NODES_PER_PANEL = 8    # nodes drawn in one trajectory figure
MAX_SCATTER_POINTS = 20000  # points drawn per split (Pearson r uses all of them)
NAMES_UP_TO = 40           # node names on the heatmap axes up to this n
FINE_POINTS = 200          # time points of the smooth model curve
DPI = 110
SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c", "none": "#7f7f7f"}
_RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
       "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.dpi": DPI, "savefig.dpi": DPI,
       "axes.spines.top": False, "axes.spines.right": False}


def _matplotlib():
    """Import matplotlib's object-oriented pieces (no pyplot); ConfigError when matplotlib is missing."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(MISSING_MATPLOTLIB) from None
    return matplotlib, Figure, FigureCanvasAgg


def parse_conditions(text, M=None):
    """Parse ``"0,3,5"`` into a list of ints (ConfigError on anything else; range-checked when M is given)."""
    if text is None:
        return None
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if not items:
        raise ConfigError("conditions: expected comma-separated condition indices such as 0,3,5")
    out = []
    for s in items:
        try:
            out.append(int(s))
        except ValueError:
            raise ConfigError(f"conditions: {s!r} is not an integer condition index") from None
    if M is not None:
        _check_indices(out, M)
    return out


def _check_indices(idx, M):
    for i in idx:
        if not 0 <= i < M:
            raise ConfigError(f"conditions: index {i} is out of range (the fit has {M} conditions, 0..{M - 1})")


def _choose_conditions(fit, conditions):
    """Indices of the conditions to draw: the given ones (ints or condition names), else a few test ones."""
    ds = fit["dataset"]
    if conditions is None:
        for idx in (fit["split"][2], fit["split"][1], fit["split"][0]):
            if len(idx):
                return [int(i) for i in np.sort(idx)[:N_DEFAULT_CONDITIONS]]
        return list(range(min(ds.M, N_DEFAULT_CONDITIONS)))
    if isinstance(conditions, str):
        conditions = [conditions]
    out = []
    for c in conditions:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            out.append(int(c))
        elif isinstance(c, str) and c in ds.conditions:
            out.append(ds.conditions.index(c))
        else:
            raise ConfigError(f"conditions: {c!r} is neither a condition index nor a condition name of the fit")
    if not out:
        raise ConfigError("conditions: the list is empty")
    _check_indices(out, ds.M)
    return list(dict.fromkeys(out))  # unique, order kept


def _save(fig, canvas_cls, path):
    canvas_cls(fig)
    fig.savefig(path, format="png", metadata={"Software": None})  # no version string: same bytes every run


# -- figures -------------------------------------------------------------------------------------------------------

def _heatmap(Figure, fit):
    ds = fit["dataset"]
    W = np.asarray(fit["best"]["W"], dtype=np.float64)
    n = W.shape[0]
    panels = [(W, f"learned W (best, epoch {fit['best_epoch']})")]
    if ds.W_true is not None:
        panels.append((ds.W_true, "true W"))
    vmax = max(float(np.max(np.abs(p[0]))) for p in panels)
    vmax = vmax if vmax > 0 and math.isfinite(vmax) else 1.0
    side = 4.6 if n <= 40 else 4.2
    fig = Figure(figsize=(side * len(panels) + 1.2, side + 0.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    names = fit["nodes"]
    im = None
    for ax, (mat, title) in zip(axes, panels):
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest", aspect="equal")
        ax.set_title(title)
        ax.set_xlabel("regulator j (column)")
        ax.set_ylabel("target i (row)")
        if n <= NAMES_UP_TO:
            size = 9 if n <= 15 else (7 if n <= 25 else 5.5)
            ax.set_xticks(range(n), names, rotation=90, fontsize=size)
            ax.set_yticks(range(n), names, fontsize=size)
        else:
            step = max(1, int(round(n / 10)))
            ticks = list(range(0, n, step))
            ax.set_xticks(ticks)
            ax.set_yticks(ticks)
        for spine in ax.spines.values():
            spine.set_visible(True)
    cb = fig.colorbar(im, ax=list(axes), shrink=0.85)
    cb.set_label("W[i, j]  (effect of j on i)")
    fig.suptitle(f"Interaction matrix W, n = {n}")
    return fig


def _trajectory(Figure, fit, c, split, t_fine, X_fine):
    ds = fit["dataset"]
    names = fit["nodes"]
    obs = ds.observed()[c]
    Y = ds.Y[c]
    Xc = X_fine  # (len(t_fine), n)
    # the most responsive nodes: largest absolute model or measured response in this condition
    Ymeas = np.where(obs & np.isfinite(Y), np.abs(Y), 0.0)
    size = np.maximum(np.nan_to_num(np.abs(Xc)).max(axis=0), Ymeas.max(axis=0))
    order = np.argsort(-size, kind="stable")[:MAX_NODES_PER_PANEL]
    shown = sorted(int(i) for i in order)
    fig = Figure(figsize=(8.6, 4.6), layout="constrained")
    ax = fig.subplots()
    colours = [f"C{k % 10}" for k in range(len(shown))]
    tt = np.concatenate(([0.0], t_fine))
    for colour, i in zip(colours, shown):
        ax.plot(tt, np.concatenate(([0.0], Xc[:, i])), color=colour, lw=1.8, label=names[i])
        keep = obs[:, i] & np.isfinite(Y[:, i])
        ax.plot(ds.t[keep], Y[keep, i], "o", color=colour, ms=6, mec="white", mew=0.8)
    ax.axhline(0.0, color="0.6", lw=0.8, zorder=0)
    ax.set_xlabel("time")
    ax.set_ylabel("response x(t)")
    ax.set_xlim(0, float(ds.t[-1]) * 1.02)
    pert = [(names[i], float(ds.U[c, i])) for i in np.flatnonzero(ds.U[c])]
    ptext = ", ".join(f"{nm} = {v:.3g}" for nm, v in pert[:4]) + (" ..." if len(pert) > 4 else "")
    ax.set_title(f"condition {ds.conditions[c]} (#{c}, {split} split): model vs measured\n"
                 f"perturbation u: {ptext or 'none'}", fontsize=10.5)
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", lw=1.8), Line2D([], [], color="0.3", marker="o", ls="none")]
    labels += ["model (best params)", "measured"]
    title = "node" if len(shown) == ds.n else f"{len(shown)} of {ds.n} nodes"
    ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _scatter(Figure, fit, X, labels):
    ds = fit["dataset"]
    obs = ds.observed()
    fig = Figure(figsize=(6.2, 5.8), layout="constrained")
    ax = fig.subplots()
    lo, hi = np.inf, -np.inf
    rng = np.random.default_rng(0)
    lab = np.asarray(labels)
    for name in ("train", "val", "test", "none"):
        rows = np.flatnonzero(lab == name)
        if rows.size == 0:
            continue
        m = obs[rows] & np.isfinite(ds.Y[rows]) & np.isfinite(X[rows])
        meas = ds.Y[rows][m]
        pred = X[rows][m]
        if meas.size == 0:
            continue
        r = mt.pearson(pred, meas) if meas.size >= 2 else None
        rtext = "n/a" if r is None else f"{r:.3f}"
        if meas.size > MAX_SCATTER_POINTS:  # draw a fixed random subset; r above uses every point
            pick = np.sort(rng.choice(meas.size, size=MAX_SCATTER_POINTS, replace=False))
            meas_d, pred_d = meas[pick], pred[pick]
        else:
            meas_d, pred_d = meas, pred
        ax.scatter(meas_d, pred_d, s=9 if meas.size < 3000 else 3, alpha=0.6, color=SPLIT_COLOURS[name], lw=0,
                   label=f"{name}: r = {rtext} ({rows.size} cond., {meas.size} pts)", rasterized=True)
        lo, hi = min(lo, meas.min(), pred.min()), max(hi, meas.max(), pred.max())
    if math.isfinite(lo):
        pad = 0.04 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", lw=1, ls="--", label="y = x")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("measured Y")
    ax.set_ylabel("predicted x(t) (best params)")
    ax.set_title("Predicted vs measured, observed entries by split")
    _legend(ax, loc="upper left", frameon=False)
    return fig


def _loss(Figure, fit):
    h = fit["history"]
    fig = Figure(figsize=(7.4, 4.4), layout="constrained")
    ax = fig.subplots()
    ep = np.asarray(h["epoch"], dtype=np.float64)
    drawn = False
    for col, colour, label in (("train_loss", SPLIT_COLOURS["train"], "training loss"),
                               ("val_loss", SPLIT_COLOURS["val"], "validation loss")):
        v = np.asarray(h[col], dtype=np.float64)
        ok = np.isfinite(v) & (v > 0)
        if ok.any():
            ax.plot(ep[ok], v[ok], color=colour, lw=1.6, label=label, marker="o" if ok.sum() == 1 else None)
            drawn = True
    if drawn:
        ax.set_yscale("log")
    if fit["best_epoch"] > 0:
        ax.axvline(fit["best_epoch"], color="0.35", ls=":", lw=1.2, label=f"best epoch {fit['best_epoch']}")
    if not drawn:
        ax.text(0.5, 0.5, "no epochs recorded", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"loss ({fit['config'].get('loss', 'mae')}, log scale)")
    ax.set_title(f"Loss per epoch ({len(ep)} epochs, status {fit['status']})")
    ax.grid(True, which="major", color="0.9", lw=0.8)
    _legend(ax, frameon=False)
    return fig


def _legend(ax, **kw):
    """A legend when something labelled was drawn (matplotlib warns on stderr otherwise: a fit whose predictions
    all failed, a history without epochs)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _curves(scores, labels):
    """ROC (fpr, tpr) and PR (recall, precision) points at every distinct threshold, highest score first."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.flatnonzero(np.concatenate((s[1:] != s[:-1], [True])))
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = (last + 1) - tp
    n1, n0 = float(y.sum()), float(y.size - y.sum())
    fpr = np.concatenate(([0.0], fp / n0))
    tpr = np.concatenate(([0.0], tp / n1))
    # PR: stop at the first threshold that reaches full recall; the curve starts at recall 0 at the first
    # precision, so drawn as steps (precision of each threshold over the recall it adds) its area is the AP
    stop = int(np.argmax(tp >= n1)) + 1
    precision = tp[:stop] / (last[:stop] + 1)
    recall = np.concatenate(([0.0], tp[:stop] / n1))
    precision = np.concatenate((precision[:1], precision))
    return fpr, tpr, recall, precision


def _edges(Figure, fit):
    ds = fit["dataset"]
    W = np.asarray(fit["best"]["W"], dtype=np.float64)
    n = W.shape[0]
    off = ~np.eye(n, dtype=bool)
    scores = np.abs(W[off])
    labels = ds.W_true[off] != 0
    if not np.all(np.isfinite(scores)):
        return None, None, None
    a_roc, a_pr = mt.auroc(scores, labels), mt.aupr(scores, labels)
    if a_roc is None or a_pr is None:  # a single class: no curve to draw
        return None, a_roc, a_pr
    fpr, tpr, recall, precision = _curves(scores, labels)
    fig = Figure(figsize=(10.0, 4.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(fpr, tpr, color="C3", lw=1.8, label=f"|W| scores, AUROC = {a_roc:.3f}")
    ax1.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="random, AUROC = 0.5")
    ax1.set_xlabel("false positive rate")
    ax1.set_ylabel("true positive rate")
    ax1.set_title("ROC: edge recovery")
    ax1.set_xlim(-0.01, 1.01)
    ax1.set_ylim(-0.01, 1.01)
    ax1.set_aspect("equal")
    ax1.legend(loc="lower right", frameon=True, framealpha=0.9, edgecolor="none")
    prev = labels.mean()
    ax2.plot(recall, precision, color="C4", lw=1.8, drawstyle="steps-pre", label=f"|W| scores, AUPR = {a_pr:.3f}")
    ax2.axhline(prev, color="0.5", ls="--", lw=1, label=f"random, precision = {prev:.3f}")
    ax2.set_xlabel("recall")
    ax2.set_ylabel("precision")
    ax2.set_title("Precision-recall: edge recovery")
    ax2.set_xlim(-0.01, 1.01)
    ax2.set_ylim(-0.01, 1.05)
    ax2.set_aspect("equal")
    ax2.legend(loc="best", frameon=True, framealpha=0.9, edgecolor="none")
    fig.suptitle(f"{int(labels.sum())} true edges among {labels.size} off-diagonal entries (W_true != 0)")
    return fig, a_roc, a_pr


# -- pages ---------------------------------------------------------------------------------------------------------

def _fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def _summary(fit):
    ds = fit["dataset"]
    meta = ds.meta or {}
    tr, va, te = (len(s) for s in fit["split"])
    obs = ds.observed()
    rows = [("status", fit["status"]),
            ("data", meta.get("network") or meta.get("source") or "n/a"),
            ("nodes n", ds.n), ("conditions M", ds.M), ("time points T", ds.T),
            ("observation times", ", ".join(f"{v:g}" for v in ds.t[:12]) + (" ..." if ds.T > 12 else "")),
            ("observed entries", f"{int(obs.sum())} of {obs.size}"),
            ("split (train / val / test)", f"{tr} / {va} / {te}"),
            ("epochs", len(fit["history"]["epoch"])), ("best epoch", fit["best_epoch"]),
            ("true W known", ds.W_true is not None)]
    return rows


def _metric_rows(fit):
    m = fit["metrics"]
    if m is None:
        return []
    return [(k, m[k]) for k in sorted(m)]


def _markdown(fit_path, fit, figures, note):
    lines = [f"# cellbox-nb fit report: `{os.path.basename(os.fspath(fit_path))}`", ""]
    if note:
        lines += [note, ""]
    lines += ["## Summary", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in _summary(fit)]
    lines += ["", "## Metrics", ""]
    rows = _metric_rows(fit)
    if rows:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in rows]
        if fit["metrics"].get("targets") == "clean":
            lines += ["", "MAE and pearson_test compare with the noise-free responses (simulated data); the "
                          "scatter plot below compares with the measured (noisy) values."]
    else:
        lines.append(f"No metrics: the fit has not ended (status {fit['status']}).")
    lines += ["", "## Figures", ""]
    for name, (title, caption) in figures.items():
        lines += [f"### {title}", "", f"![{title}]({name})", "", caption, ""]
    lines += ["## Configuration", "", "```json", json.dumps(fit["config"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .7em;text-align:left}
th{background:#f3f3f3}img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.9em}figure{margin:1.2em 0}
figcaption{color:#555;font-size:.92em}"""


def _html(fit_path, fit, figures, note):
    def e(text, quote=False):  # element text needs only <, > and & escaped; attributes pass quote=True
        return html.escape(text, quote=quote)

    title = f"cellbox-nb fit report: {os.path.basename(os.fspath(fit_path))}"
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{e(title)}</h1>"]
    if note:
        out.append(f"<p>{e(note)}</p>")
    out += ["<h2>Summary</h2>", "<table>"]
    out += [f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in _summary(fit)]
    out += ["</table>", "<h2>Metrics</h2>"]
    rows = _metric_rows(fit)
    if rows:
        out += ["<table>", "<tr><th>metric</th><th>value</th></tr>"]
        out += [f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in rows]
        out.append("</table>")
    else:
        out.append(f"<p>No metrics: the fit has not ended (status {e(fit['status'])}).</p>")
    out.append("<h2>Figures</h2>")
    for name, (ftitle, caption) in figures.items():
        out += ["<figure>", f"<h3>{e(ftitle)}</h3>", f'<img src="{e(name, quote=True)}" alt="{e(ftitle, quote=True)}">',
                f"<figcaption>{e(caption)}</figcaption>", "</figure>"]
    out += ["<h2>Configuration</h2>", f"<pre>{e(json.dumps(fit['config'], indent=2, sort_keys=True))}</pre>",
            "</body>", "</html>", ""]
    return "\n".join(out)


# -- entry point ---------------------------------------------------------------------------------------------------

def make_report(fit_path, out_dir, *, conditions=None) -> dict:
    """Write the figures, ``report.md`` and ``index.html`` of a fit into ``out_dir``.

    Parameters
    ----------
    fit_path : path of a results file.
    out_dir : folder to write into (created if missing; files of the same names are replaced).
    conditions : condition indices (ints) or names to draw trajectories for; default: the first three test
        conditions (validation, then training conditions when the split has no test set).

    Returns
    -------
    dict file name -> written path, in the order: W_heatmap.png, trajectory_<iiii>.png ..., scatter.png,
    loss.png, edges_roc_pr.png (only with a true W that has edges and non-edges), report.md, index.html.

    Raises
    ------
    ConfigError when matplotlib is missing or a condition is unknown; InputDataError for a bad results file.
    """
    fit = read_fit(fit_path)  # a bad file is reported first (InputDataError), with or without matplotlib
    matplotlib, Figure, Canvas = _matplotlib()
    chosen = _choose_conditions(fit, conditions)
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"output folder '{out_dir}' is a file")
    os.makedirs(out_dir, exist_ok=True)
    with all_or_none() as files:  # only a complete report replaces an older one
        _report_files(fit, fit_path, out_dir, chosen, matplotlib, Figure, Canvas, files)
    return {os.path.basename(path): path for path in files.finals}


def _report_files(fit, fit_path, out_dir, chosen, matplotlib, Figure, Canvas, files):
    """make_report's figures and pages, into the temporaries of ``files`` (a data.h5atomic.FileSet)."""
    ds = fit["dataset"]
    labels = split_labels(fit)
    figures = {}

    def reserve(name):
        return files.reserve(os.path.join(out_dir, name))

    def emit(fig, name, title, caption):
        _save(fig, Canvas, reserve(name))
        figures[name] = (title, caption)

    X = model_predictions(fit, "best")
    t_end = float(ds.t[-1])
    t_fine = np.union1d(np.linspace(t_end / FINE_POINTS, t_end, FINE_POINTS), ds.t)
    X_fine = model_predictions(fit, "best", t=t_fine, conditions=chosen)

    with matplotlib.rc_context(_RC):
        emit(_heatmap(Figure, fit), "W_heatmap.png", "Interaction matrix W",
             "Learned W (best parameters)" + (" beside the true W" if ds.W_true is not None else "")
             + "; rows are targets, columns regulators; red positive, blue negative, common scale centred at 0.")
        for k, c in enumerate(chosen):
            emit(_trajectory(Figure, fit, c, labels[c], t_fine, X_fine[k]), f"trajectory_{c:04d}.png",
                 f"Trajectories, condition {ds.conditions[c]} ({labels[c]})",
                 "Lines: the model with the best parameters, solved on a fine time grid from x(0) = 0; "
                 "markers: the measured values at the observation times.")
        emit(_scatter(Figure, fit, X, labels), "scatter.png", "Predicted vs measured",
             "Every observed entry (condition, time, node), coloured by split; r is the Pearson correlation "
             "of the predictions with the measured values of that split.")
        emit(_loss(Figure, fit), "loss.png", "Loss curves",
             "Training and validation loss per epoch (log scale); the dotted line marks the best epoch.")
        note = None
        if ds.W_true is not None:
            fig, a_roc, a_pr = _edges(Figure, fit)
            if fig is not None:
                emit(fig, "edges_roc_pr.png", "Edge recovery (ROC and precision-recall)",
                     f"Edge scores |W| of the best parameters over the off-diagonal entries, labels W_true != 0: "
                     f"AUROC {_fmt(a_roc)}, AUPR {_fmt(a_pr)}.")
            else:
                note = "Edge-recovery curves omitted: the true W has only edges or only non-edges off the diagonal."

    for name, text in (("report.md", _markdown(fit_path, fit, figures, note)),
                       ("index.html", _html(fit_path, fit, figures, note))):
        with open(reserve(name), "w", encoding="utf-8") as fh:
            fh.write(text)
    # figures an earlier report in this folder drew and this one does not (other conditions, no true W): gone,
    # so the folder holds one report
    for name in sorted(os.listdir(out_dir)):
        if (re.fullmatch(r"trajectory_\d{4,}\.png", name) or name == "edges_roc_pr.png") and name not in figures:
            files.discard(os.path.join(out_dir, name))
