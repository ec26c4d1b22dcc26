"""Ground-truth networks: the ten built-in BEELINE networks, network CSV files, and seeded random networks.

A network is the truth that :func:`cellbox_nb.data.dataset.simulate` integrates: W (n, n) with
W[i, j] = effect of node j on node i (row = target, column = regulator) and the gain alpha (n,).

Network CSV layout (the CellBox.jl / BEELINE one): a header ``<corner>,<name_1>,...,<name_n>``, then n rows
``<name_i>,W[i,1],...,W[i,n]``. Row labels must equal the column labels in the same order; the reader checks
this instead of trusting positions (the upstream Curated_GSD.csv swaps two row labels).
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..errors import ConfigError, InputDataError
from ._args import check_float, check_int, seed_sequence


@dataclass
class Network:
    """A signed, weighted regulatory network with node gains.

    Parameters
    ----------
    name : str
        Short name (``"LI"``, ``"random:30"``, or the CSV file stem).
    nodes : list of str, length n
        Node names, in the order of the rows and columns of ``W``.
    W : ndarray of float64, shape (n, n)
        W[i, j] = effect of node j on node i (row = target, column = regulator).
    alpha : ndarray of float64, shape (n,)
        Gain on the tanh envelope of each node.
    kind : str
        ``"synthetic"``, ``"curated"``, ``"csv"`` or ``"random"``.
    description : str
        One line for listings.
    """

    name: str
    nodes: list[str]
    W: np.ndarray
    alpha: np.ndarray
    kind: str = ""
    description: str = ""

    def __post_init__(self):
        self.nodes = [str(v) for v in self.nodes]
        self.W = np.array(self.W, dtype=np.float64)
        self.alpha = np.array(self.alpha, dtype=np.float64)
        n = len(self.nodes)
        if self.W.shape != (n, n):
            raise InputDataError(f"network {self.name}: W has shape {self.W.shape}, expected ({n}, {n})")
        if self.alpha.shape != (n,):
            raise InputDataError(f"network {self.name}: alpha has shape {self.alpha.shape}, expected ({n},)")
        if not (np.isfinite(self.W).all() and np.isfinite(self.alpha).all()):
            raise InputDataError(f"network {self.name}: W and alpha must be finite")

    @property
    def n(self) -> int:
        """Number of nodes."""
        return len(self.nodes)

    @property
    def n_edges(self) -> int:
        """Number of nonzero entries of W (self-loops included)."""
        return int(np.count_nonzero(self.W))

    @property
    def n_positive(self) -> int:
        """Number of activating (positive) entries of W."""
        return int(np.count_nonzero(self.W > 0))

    @property
    def n_negative(self) -> int:
        """Number of inhibiting (negative) entries of W."""
        return int(np.count_nonzero(self.W < 0))


@dataclass(frozen=True)
class BuiltinNetwork:
    """One row of the built-in table: file in ``cellbox_nb/data/networks``, seed-paper alpha, description."""

    name: str
    file: str
    alpha: float
    kind: str
    description: str


# Seed-paper (CellBox.jl config) gains: 1.0 for LI, LL, CY, BF; 0.2 for the others.
_TABLE = [
    BuiltinNetwork("LI", "Synthetic_LI.csv", 1.0, "synthetic", "linear chain with a feedback inhibition"),
    BuiltinNetwork("LL", "Synthetic_LL.csv", 1.0, "synthetic", "long linear chain with a feedback inhibition"),
    BuiltinNetwork("CY", "Synthetic_CY.csv", 1.0, "synthetic", "cycle of activations and inhibitions"),
    BuiltinNetwork("BF", "Synthetic_BF.csv", 1.0, "synthetic", "bifurcating trajectory"),
    BuiltinNetwork("BFC", "Synthetic_BFC.csv", 0.2, "synthetic", "bifurcating then converging trajectory"),
    BuiltinNetwork("TF", "Synthetic_TF.csv", 0.2, "synthetic", "trifurcating trajectory"),
    BuiltinNetwork("mCAD", "Curated_mCAD.csv", 0.2, "curated", "mammalian cortical area development"),
    BuiltinNetwork("VSC", "Curated_VSC.csv", 0.2, "curated", "ventral spinal cord development"),
    BuiltinNetwork("HSC", "Curated_HSC.csv", 0.2, "curated", "hematopoietic stem cell differentiation"),
    BuiltinNetwork("GSD", "Curated_GSD.csv", 0.2, "curated", "gonadal sex determination"),
]
#: The built-in networks by short name (look names up case-insensitively with :func:`builtin_network`).
BUILTIN: dict[str, BuiltinNetwork] = {row.name: row for row in _TABLE}
_BY_LOWER = {row.name.lower(): row for row in _TABLE}

RANDOM_PREFIX = "random:"


def builtin_network(name: str) -> BuiltinNetwork:
    """Return the built-in table row for ``name`` (case-insensitive).

    Raises
    ------
    ConfigError
        If no built-in network has that name; the message lists the valid names and the closest one.
    """
    row = _BY_LOWER.get(str(name).strip().lower())
    if row is None:
        raise ConfigError(_unknown_name_message(str(name)))
    return row


def _unknown_name_message(name: str) -> str:
    valid = ", ".join(BUILTIN)
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in BUILTIN], n=1, cutoff=0.5)
    hint = ""
    if close:
        hint = f" (did you mean {next(k for k in BUILTIN if k.lower() == close[0])}?)"
    return (f"unknown network {name!r}{hint}; valid: {valid}, a CSV file path, "
            f"or {RANDOM_PREFIX}N for a random network of N nodes")


def list_networks() -> list[Network]:
    """Load every built-in network, in table order.

    Returns
    -------
    list of Network
        LI, LL, CY, BF, BFC, TF, mCAD, VSC, HSC, GSD.
    """
    return [_load_builtin(row) for row in _TABLE]


def _load_builtin(row: BuiltinNetwork) -> Network:
    resource = resources.files("cellbox_nb.data.networks").joinpath(row.file)
    text = resource.read_text(encoding="utf-8")
    nodes, W = _parse_network_text(text, row.file)
    return Network(name=row.name, nodes=nodes, W=W, alpha=np.full(len(nodes), row.alpha),
                   kind=row.kind, description=row.description)


def read_network_csv(path, *, alpha: float = 1.0, name: str | None = None) -> Network:
    """Read a signed adjacency matrix from a network CSV file.

    Parameters
    ----------
    path : str or os.PathLike
        CSV file: header ``<corner>,<name_1>,...,<name_n>``, then n rows ``<name_i>,W[i,1],...,W[i,n]``.
        Blank lines are ignored; cells are stripped of surrounding spaces.
    alpha : float
        Gain given to every node (the file carries none).
    name : str, optional
        Network name; defaults to the file stem.

    Returns
    -------
    Network
        With ``W`` (n, n) float64 and ``alpha`` (n,) all equal to ``alpha``.

    Raises
    ------
    InputDataError
        One line naming the file and the problem: missing or empty file, ragged rows, a non-numeric or
        non-finite cell (with its line and column), a non-square matrix, duplicate node names, or row labels
        that differ from the column labels (with the first mismatching position and both labels).
    """
    path = os.fspath(path)
    alpha = check_float("alpha", alpha)
    if not os.path.exists(path):
        raise InputDataError(f"network file '{path}': not found")
    if not os.path.isfile(path):
        raise InputDataError(f"network file '{path}': not a regular file")
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise InputDataError(f"network file '{path}': not UTF-8 text") from None
    nodes, W = _parse_network_text(text, path)
    stem = os.path.splitext(os.path.basename(path))[0]
    return Network(name=name or stem, nodes=nodes, W=W, alpha=np.full(len(nodes), alpha),
                   kind="csv", description=f"from {path}")


def _parse_network_text(text: str, source: str) -> tuple[list[str], np.ndarray]:
    """Parse and check network CSV text; return (nodes, W (n, n) float64). Errors name ``source``."""
    def fail(problem: str):
        raise InputDataError(f"network file '{source}': {problem}")

    rows = []  # (line number, cells)
    for lineno, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in cells]
        if any(cells):
            rows.append((lineno, cells))
    if not rows:
        fail("empty (expected a header line and one row per node)")
    header_line, header = rows[0]
    nodes = header[1:]
    n = len(nodes)
    if n == 0:
        fail(f"line {header_line}: the header names no nodes")
    for j, node in enumerate(nodes):
        if not node:
            fail(f"line {header_line}: column {j + 2} of the header has no node name")
    seen: dict[str, int] = {}
    for j, node in enumerate(nodes):
        if node in seen:
            fail(f"duplicate node name {node!r} in the header (columns {seen[node] + 2} and {j + 2})")
        seen[node] = j

    labels = []
    W = np.zeros((len(rows) - 1, n))
    for i, (lineno, cells) in enumerate(rows[1:]):
        if len(cells) != n + 1:
            fail(f"line {lineno} has {len(cells)} fields, the header has {n + 1} (ragged rows)")
        labels.append(cells[0])
        for j, cell in enumerate(cells[1:]):
            try:
                value = float(cell)
            except ValueError:
                fail(f"line {lineno}, column {j + 2} ({nodes[j]!r}): {cell!r} is not a number")
            if not math.isfinite(value):
                fail(f"line {lineno}, column {j + 2} ({nodes[j]!r}): non-finite value {cell!r}")
            W[i, j] = value
    if len(labels) != n:
        fail(f"not square: {len(labels)} data rows for {n} node columns")
    for i, (row_label, col_label) in enumerate(zip(labels, nodes)):
        if row_label != col_label:
            fail(f"row labels differ from the column labels: row {i + 1} (line {rows[i + 1][0]}) is "
                 f"{row_label!r} but column {i + 1} is {col_label!r}")
    return nodes, W


def random_network(n: int, *, in_degree: int = 3, scale: float = 0.9, seed, name: str | None = None) -> Network:
    """A seeded random sparse signed network with spectral radius at most ``scale``.

    Each node gets ``min(in_degree, n - 1)`` distinct regulators other than itself (no self-loops), with
    random signs (+/- with probability 1/2) and magnitudes drawn from U[0.5, 1.5]. If the spectral radius
    of the result exceeds ``scale``, W is multiplied by ``scale / radius``. Gains alpha ~ U[0.5, 1.5].

    Parameters
    ----------
    n : int
        Number of nodes (>= 1), named ``g1`` ... ``gn``.
    in_degree : int
        Regulators per node (>= 0; capped at n - 1).
    scale : float
        Upper bound of the spectral radius of W (> 0).
    seed : int or numpy.random.SeedSequence
        Seed; the same seed gives the same network.
    name : str, optional
        Defaults to ``"random:<n>"``.

    Returns
    -------
    Network
        ``W`` (n, n) float64 with n * min(in_degree, n - 1) nonzeros, ``alpha`` (n,) float64.
    """
    n = check_int("n", n, minimum=1)
    in_degree = check_int("in_degree", in_degree, minimum=0)
    scale = check_float("scale", scale, minimum=0.0, strict=True)
    rng = np.random.default_rng(seed_sequence(seed))
    k = min(in_degree, n - 1)
    W = np.zeros((n, n))
    for i in range(n):
        others = np.delete(np.arange(n), i)
        regulators = rng.choice(others, size=k, replace=False)
        signs = np.where(rng.random(k) < 0.5, -1.0, 1.0)
        W[i, regulators] = signs * rng.uniform(0.5, 1.5, size=k)
    radius = float(np.max(np.abs(np.linalg.eigvals(W))))
    if radius > scale:
        # The margin keeps the recomputed radius <= scale despite rounding in the eigenvalue solver.
        W *= (scale / radius) * (1.0 - 1e-9)
    alpha = rng.uniform(0.5, 1.5, size=n)
    return Network(name=name or f"{RANDOM_PREFIX}{n}", nodes=[f"g{i + 1}" for i in range(n)], W=W, alpha=alpha,
                   kind="random", description=f"random, in-degree {k}, spectral radius <= {scale:g}")


def load_network(spec, *, seed=0, alpha: float | None = None) -> Network:
    """Load a network from a built-in name, a CSV path, or ``random:N``.

    Parameters
    ----------
    spec : str or os.PathLike
        A built-in short name (case-insensitive: LI, LL, CY, BF, BFC, TF, mCAD, VSC, HSC, GSD), the path of a
        network CSV file, or ``random:N`` for :func:`random_network` with N nodes.
    seed : int or numpy.random.SeedSequence
        Seed for ``random:N`` (ignored otherwise).
    alpha : float, optional
        Gain for every node, overriding the default: the seed-paper value for built-ins, 1.0 for CSV files,
        the random draw for ``random:N``.

    Returns
    -------
    Network

    Raises
    ------
    ConfigError
        Unknown name (the message lists the valid ones and the closest), or a malformed ``random:N``.
    InputDataError
        A CSV file that is missing or malformed.
    """
    if alpha is not None:
        alpha = check_float("alpha", alpha)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"network must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec.lower().startswith(RANDOM_PREFIX):
        size = spec[len(RANDOM_PREFIX):].strip()
        if not size.isdecimal() or int(size) < 1:
            raise ConfigError(f"network {spec!r}: expected {RANDOM_PREFIX}N with N a positive integer")
        net = random_network(int(size), seed=seed)
    elif spec.lower() in _BY_LOWER:
        net = _load_builtin(_BY_LOWER[spec.lower()])
    elif os.path.exists(spec) or os.sep in spec or (os.altsep and os.altsep in spec) or "." in spec:
        net = read_network_csv(spec)
    else:
        raise ConfigError(_unknown_name_message(spec))
    if alpha is not None:
        net.alpha = np.full(net.n, alpha)
    return net
