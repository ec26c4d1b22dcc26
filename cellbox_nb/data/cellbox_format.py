"""Reader for data folders in the layout of the original CellBox (Yuan et al., Cell Systems 2020).

Folder layout
-------------
All tables are plain text, comma-separated, **without a header row**; rows are conditions, columns are nodes.

- ``pert.csv``        (M, n) perturbation of each condition, in CellBox's sign convention (see below).
- ``expr.csv``        (M, n) measured response of each condition (log-ratio to the unperturbed state).
- ``node_Index.csv``  n node names, one per line (the column order of pert and expr); no header.
- ``expr_index.txt``  optional: one label per condition, one per line; the first whitespace-separated field is
                      the label (further fields are ignored, as in the SK-MEL-133 file). Without it the
                      conditions are named ``c0000``, ``c0001``, ...

Time points. CellBox data are steady-state: expr.csv is read as one observation at ``t_end`` (default 20, the
original's nT * dT = 200 * 0.1). A folder holds a **time series** instead when it has a file ``times.csv`` with T
observation times, one per line (strictly increasing, > 0), and the responses as ``expr_t1.csv`` ...
``expr_tT.csv`` (each (M, n), file k holding x(t_k)); ``expr.csv`` is then not read. The ``times=`` argument
of :func:`read_cellbox` gives the same layout without the file.

Sign convention. The original CellBox model is ``dx/dt = eps * tanh(W x + u) - alpha * x`` (+u), and its
pert.csv holds that u (SK-MEL-133: negative values on the drug-activity nodes). cellbox-nb's model is
``dx/dt = alpha * tanh(W x - u) - d * x`` (-u), so the reader sets **U = -pert**. Parameter names map as
CellBox eps -> our alpha (gain), CellBox alpha -> our d (decay, ``learn_decay: true``), W -> W (same
orientation: W[i, j] = effect of node j on node i), +u -> -u.

Node roles. CellBox orders nodes as proteins, then phenotypes, then drug-activity nodes, and its configs give
the boundaries (``n_protein_nodes``; ``n_activity_nodes`` is, despite its name, the index where the activity
nodes *start*). Here the counts are given explicitly (``n_protein_nodes``, ``n_phenotype_nodes``; the rest are
activity nodes) and recorded in ``meta["node_roles"]``; :func:`node_roles` reads them back. When roles are known,
a nonzero perturbation outside the activity nodes is refused (a wrong count would otherwise go unnoticed).

Checks. Every problem is one line of :class:`~cellbox_nb.errors.InputDataError` naming the file, and the row and
column (1-based, as in a spreadsheet) where there is one: a missing or empty file, a blank line between rows,
a row with the wrong number of columns, a cell that is not a number, NaN or Inf, pert and expr of different
shapes, a node index of the wrong length, with a repeated name or with a second column, condition labels of the wrong number or
repeated. Identical perturbation rows whose responses differ (SK-MEL-133: conditions 34 and 41, 0-based, P6|20
and P6|40) raise a :class:`CellboxDataWarning`, not an error: both rows are kept.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from ..errors import ConfigError, InputDataError
from .dataset import Dataset

SIGN_CONVENTION = ("CellBox writes +u (dx/dt = eps*tanh(W x + u) - alpha*x); cellbox-nb uses -u "
                   "(dx/dt = alpha*tanh(W x - u) - d*x), so U = -pert")
PARAMETER_MAP = {"eps": "alpha", "alpha": "d", "W": "W", "+u": "-u"}
ROLE_ORDER = ("protein", "phenotype", "activity")
DEFAULT_T_END = 20.0


class CellboxDataWarning(UserWarning):
    """A suspicious but usable feature of a data folder (e.g. identical perturbations, different responses)."""


# -- tables -------------------------------------------------------------------------------------------------
def _read_lines(path: str, label: str) -> list[str]:
    """The file's lines without line ends and trailing blank lines; InputDataError if missing or empty."""
    if not os.path.exists(path):
        raise InputDataError(f"{label}: file not found ({path})")
    if os.path.isdir(path):
        raise InputDataError(f"{label}: is a folder, expected a file ({path})")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            lines = [ln.rstrip("\r\n") for ln in fh]
    except UnicodeDecodeError:
        raise InputDataError(f"{label}: not a UTF-8 text file ({path})") from None
    except OSError as exc:
        raise InputDataError(f"{label}: cannot read ({exc.strerror}) ({path})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputDataError(f"{label}: file is empty ({path})")
    for r, line in enumerate(lines, 1):
        if not line.strip():
            raise InputDataError(f"{label} row {r}: blank line between rows")
    return lines


def read_table(path: str, label: str | None = None) -> np.ndarray:
    """Read a header-less comma-separated table of finite numbers into a float64 array (rows, columns).

    Raises
    ------
    InputDataError
        One line naming ``label`` (default: the file name), the row and the column (1-based): missing or empty
        file, blank line, ragged row, a cell that is not a number, NaN or Inf.
    """
    label = label or os.path.basename(path)
    lines = _read_lines(path, label)
    widths = [line.count(",") + 1 for line in lines]
    width = widths[0]
    if len(widths) > 2 and widths.count(width) == 1 and len(set(widths[1:])) == 1:  # row 1 is the odd one
        raise InputDataError(f"{label} row 1 has {width} columns, expected {widths[1]} (as in the other rows)")
    rows = []
    for r, line in enumerate(lines, 1):
        cells = line.split(",")
        if len(cells) != width:
            raise InputDataError(f"{label} row {r} has {len(cells)} columns, expected {width} (as in row 1)")
        row = []
        for c, cell in enumerate(cells, 1):
            text = cell.strip()
            try:
                if "_" in text:  # float() reads "1_0" as 10
                    raise ValueError(text)
                value = float(text)
            except ValueError:
                shown = repr(text) if text else "an empty cell"
                if ";" in text or "\t" in text:
                    hint = " (CellBox tables are comma-separated)"
                else:
                    hint = " (CellBox tables have no header row)" if r == 1 else ""
                raise InputDataError(f"{label} row {r}, column {c}: {shown} is not a number{hint}") from None
            if not math.isfinite(value):
                raise InputDataError(f"{label} row {r}, column {c}: non-finite value {text!r}")
            row.append(value)
        rows.append(row)
    return np.array(rows, dtype=np.float64)


def read_names(path: str, label: str | None = None, *, first_field: bool = False,
               comma_ok: bool = True) -> list[str]:
    """Read one name per line (the first whitespace-separated field with ``first_field``); no repeats.  With
    ``comma_ok=False`` (node names) a line with a comma is refused: it is a table with more than one column (an
    index written beside the names, say), and which column holds the names would be a guess.

    Raises
    ------
    InputDataError
        Missing or empty file, blank line, a repeated name (both rows named, 1-based), a comma where none may be.
    """
    label = label or os.path.basename(path)
    lines = _read_lines(path, label)
    names = [ln.split()[0] if first_field else ln.strip() for ln in lines]
    seen = {}
    for r, name in enumerate(names, 1):
        if not comma_ok and "," in name:
            raise InputDataError(f"{label} row {r}: {name!r} has a comma; the file holds one node name per line "
                                 f"and no other columns")
        if name in seen:
            raise InputDataError(f"{label} row {r} repeats the name {name!r} of row {seen[name]}")
        seen[name] = r
    return names


def read_times(path: str, label: str | None = None) -> np.ndarray:
    """Read observation times, one per line (a one-column table): finite, > 0, strictly increasing."""
    label = label or os.path.basename(path)
    tab = read_table(path, label)
    if tab.shape[1] != 1:
        raise InputDataError(f"{label}: expected one time per line, got {tab.shape[1]} columns")
    return _check_times(tab[:, 0], label)


def _check_times(times, label: str) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.isfinite(t).all():
        raise InputDataError(f"{label}: times must be a non-empty list of finite numbers")
    if t[0] <= 0:
        raise InputDataError(f"{label}: times must be > 0 (x(0) = 0 is the initial state), got {t[0]:g}")
    if np.any(np.diff(t) <= 0):
        k = int(np.argmax(np.diff(t) <= 0))
        raise InputDataError(f"{label}: times must be strictly increasing, got {t[k]:g} then {t[k + 1]:g}")
    return t


# -- node roles ---------------------------------------------------------------------------------------------
def role_counts(n: int, n_protein_nodes, n_phenotype_nodes) -> dict:
    """The ``meta["node_roles"]`` entry for n nodes ordered protein, phenotype, activity (ConfigError if invalid)."""
    for key, value in (("n_protein_nodes", n_protein_nodes), ("n_phenotype_nodes", n_phenotype_nodes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"{key} must be a non-negative integer, got {value!r}")
    n_protein, n_phenotype = int(n_protein_nodes), int(n_phenotype_nodes)
    if n_protein + n_phenotype > n:
        raise ConfigError(f"n_protein_nodes + n_phenotype_nodes = {n_protein + n_phenotype} exceeds the "
                          f"{n} nodes of the data")
    return {"order": list(ROLE_ORDER), "protein": n_protein, "phenotype": n_phenotype,
            "activity": n - n_protein - n_phenotype}


def node_roles(ds: Dataset) -> list[str] | None:
    """Per-node roles ('protein', 'phenotype', 'activity') from ``ds.meta["node_roles"]``, or None if unknown."""
    info = ds.meta.get("node_roles")
    if not isinstance(info, dict):
        return None
    counts = [info.get(role) for role in ROLE_ORDER]
    if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != ds.n:
        raise InputDataError(f"dataset meta 'node_roles' does not describe {ds.n} nodes: {info}")
    return [role for role, c in zip(ROLE_ORDER, counts) for _ in range(c)]


def with_node_roles(ds: Dataset, n_protein_nodes, n_phenotype_nodes) -> Dataset:
    """Record node roles (protein, phenotype, activity counts) in the dataset's meta, and check them.

    Raises
    ------
    ConfigError
        Counts that are negative or exceed the node count.
    InputDataError
        A condition perturbs a node that is not an activity node (the counts are probably wrong).
    """
    ds.meta["node_roles"] = role_counts(ds.n, n_protein_nodes, n_phenotype_nodes)
    _check_perturbed_roles(ds)
    return ds


def _check_perturbed_roles(ds: Dataset) -> None:
    roles = node_roles(ds)
    if roles is None:
        return
    off = [j for j in np.flatnonzero((ds.U != 0).any(axis=0)) if roles[j] != "activity"]
    if off:
        j = off[0]
        c = int(np.flatnonzero(ds.U[:, j])[0])
        raise InputDataError(f"condition {c} ({ds.conditions[c]}) perturbs node {ds.nodes[j]!r} (column {j + 1}), "
                             f"which the node roles make a {roles[j]} node: only the last "
                             f"{ds.meta['node_roles']['activity']} (activity) nodes may be perturbed; check "
                             f"n_protein_nodes / n_phenotype_nodes")


# -- folder reader ------------------------------------------------------------------------------------------
def read_cellbox(folder, *, pert: str = "pert.csv", expr: str = "expr.csv", node_index: str = "node_Index.csv",
                 conditions: str | None = None, t_end: float = DEFAULT_T_END, times=None,
                 n_protein_nodes: int | None = None, n_phenotype_nodes: int | None = None,
                 name: str | None = None) -> Dataset:
    """Read a CellBox data folder (layout in the module docstring) into a :class:`Dataset`.

    Parameters
    ----------
    folder : str or os.PathLike
    pert, expr, node_index : str
        File names inside the folder.
    conditions : str, optional
        Condition-label file; default ``expr_index.txt`` when the folder has one (then it is optional).
    t_end : float
        Observation time of steady-state data (default 20 = CellBox's nT * dT).
    times : sequence of float, optional
        Time-series layout: observation times t_1 < ... < t_T, responses in ``expr_t1.csv`` ... (overrides a
        ``times.csv`` in the folder).
    n_protein_nodes, n_phenotype_nodes : int, optional
        Node roles (both or neither): proteins first, then phenotypes, the rest drug-activity nodes.
    name : str, optional
        Dataset name recorded in meta (default: the folder's name).

    Returns
    -------
    Dataset
        U = -pert (M, n), t (T,), Y (M, T, n), node names, condition labels, meta with ``source``, ``folder``,
        ``files``, ``sign_convention``, ``t_end`` / ``times``, and ``node_roles`` when given.

    Raises
    ------
    InputDataError
        One line naming the file (and row/column): see the module docstring.
    ConfigError
        Bad arguments (t_end <= 0, only one of the role counts, counts larger than n).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputDataError(f"CellBox data folder not found: {folder}")
    if (n_protein_nodes is None) != (n_phenotype_nodes is None):
        raise ConfigError("give both n_protein_nodes and n_phenotype_nodes, or neither")
    path = lambda fname: os.path.join(folder, fname)  # noqa: E731
    P = read_table(path(pert), pert)
    names = read_names(path(node_index), node_index, comma_ok=False)
    M, n = P.shape
    if len(names) != n:
        raise InputDataError(f"{node_index} has {len(names)} names but {pert} has {n} columns")

    series_file = path("times.csv")
    from_file = times is None and os.path.exists(series_file)
    if from_file:
        times = read_times(series_file, "times.csv")
    if times is not None:
        t = _check_times(times, "times")
        stem, ext = os.path.splitext(expr)
        expr_files = [f"{stem}_t{k}{ext}" for k in range(1, t.size + 1)]
        extra = f"{stem}_t{t.size + 1}{ext}"
        if from_file and os.path.exists(path(extra)):  # (a times= argument may take the first times on purpose)
            raise InputDataError(f"times.csv lists {t.size} times but the folder also has {extra} (one response "
                                 f"file per time: add its time to times.csv or remove the file)")
    else:
        if isinstance(t_end, bool) or not isinstance(t_end, (int, float)) or not math.isfinite(t_end) or t_end <= 0:
            raise ConfigError(f"t_end must be a finite number > 0, got {t_end!r}")
        t = np.array([float(t_end)])
        expr_files = [expr]
    Y = np.empty((M, t.size, n))
    for k, fname in enumerate(expr_files):
        E = read_table(path(fname), fname)
        if E.shape != P.shape:
            raise InputDataError(f"{fname} has shape {E.shape[0]} x {E.shape[1]} (rows x columns) but {pert} "
                                 f"has {M} x {n}")
        Y[:, k, :] = E

    label_file = conditions if conditions is not None else "expr_index.txt"
    if conditions is not None or os.path.exists(path(label_file)):
        labels = read_names(path(label_file), label_file, first_field=True)
        if len(labels) != M:
            raise InputDataError(f"{label_file} has {len(labels)} labels but {pert} has {M} rows")
    else:
        label_file, labels = None, None

    meta = {"source": "cellbox folder", "name": name or os.path.basename(os.path.abspath(folder)),
            "folder": os.path.abspath(folder),
            "files": {"pert": pert, "expr": expr_files if times is not None else expr, "node_index": node_index,
                      "conditions": label_file},
            "sign_convention": SIGN_CONVENTION, "parameter_map": dict(PARAMETER_MAP)}
    if times is not None:
        meta["times"] = t.tolist()
    else:
        meta["t_end"] = float(t[0])
    try:
        ds = Dataset(U=-P + 0.0, t=t, Y=Y, nodes=names, conditions=labels, meta=meta)
    except InputDataError as exc:
        raise InputDataError(f"CellBox folder {folder}: {exc}") from None
    if n_protein_nodes is not None:
        with_node_roles(ds, n_protein_nodes, n_phenotype_nodes)
    _warn_duplicates(ds, P, pert)
    _warn_sign(ds, pert)
    return ds


def _warn_duplicates(ds: Dataset, P: np.ndarray, pert_label: str) -> None:
    """Warn (CellboxDataWarning) for each group of identical perturbation rows whose responses differ."""
    _, inverse, counts = np.unique(P, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    for g in np.flatnonzero(counts > 1):
        rows = np.flatnonzero(inverse == g)
        spread = float(np.max(np.abs(ds.Y[rows] - ds.Y[rows[0]])))
        if spread > 0:
            shown = ", ".join(f"{r} ({ds.conditions[r]})" for r in rows)
            warnings.warn(f"{pert_label}: conditions {shown} (0-based) have identical perturbations but their "
                          f"responses differ by up to {spread:.3g}; all are kept", CellboxDataWarning, stacklevel=3)


def _warn_sign(ds: Dataset, pert_label: str) -> None:
    """With known roles: warn when the activity nodes respond against the CellBox sign convention.

    In CellBox's model an activity node without inputs settles at eps/alpha * tanh(pert), so its response has the
    sign of pert (of -U here). A majority of opposite signs suggests a pert file written with the -u convention.
    """
    roles = node_roles(ds)
    if roles is None:
        return
    act = np.array([r == "activity" for r in roles])
    P = -ds.U[:, act]
    Y = ds.Y[:, -1, act]
    hit = P != 0
    if hit.sum() >= 3 and np.mean(np.sign(Y[hit]) == np.sign(P[hit])) < 0.5:
        warnings.warn(f"{pert_label}: most perturbed activity nodes respond with the opposite sign of pert; "
                      f"CellBox files use +u (U = -pert here); was this file written with -u?",
                      CellboxDataWarning, stacklevel=3)
