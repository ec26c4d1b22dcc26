"""Experimental design: which nodes each condition perturbs and how strongly, and when responses are observed.

Seed-paper style (Ji et al. 2021, CellBox.jl): every condition perturbs a few nodes with levels in (0, 1] drawn
by a Latin hypercube over conditions, and responses are read at t = tfinal * k / T for k = 1..T.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._args import check_float, check_int, seed_sequence

METHODS = ("lhs", "uniform")


def design_perturbations(n: int, M: int, *, max_targets: int = 2, low: float = 0.0, high: float = 1.0,
                         method: str = "lhs", seed, targets=None) -> np.ndarray:
    """Draw a sparse perturbation matrix.

    Each condition perturbs k distinct nodes, k drawn uniformly from 1..max_targets, the nodes drawn
    uniformly among ``targets``; the other entries are 0. The levels lie in (low, high]:

    - ``"lhs"``: for each node, a Latin hypercube over the M conditions: (low, high] is cut into M equal
      bins, a random permutation gives each condition its own bin, and the level is uniform inside that
      bin. Entries of nodes a condition does not perturb are then set to 0 (as in CellBox.jl, which leaves
      the perturbed levels stratified only before that zeroing).
    - ``"uniform"``: independent uniform levels in (low, high].

    The nodes perturbed and the levels come from two streams spawned from ``seed``, so changing ``method``,
    ``low`` or ``high`` does not change which nodes are perturbed.

    Parameters
    ----------
    n : int
        Number of nodes (>= 1).
    M : int
        Number of conditions (>= 1).
    max_targets : int
        Most nodes one condition perturbs (1 <= max_targets <= number of allowed targets).
    low, high : float
        Levels lie in (low, high]; low < high.
    method : {"lhs", "uniform"}
        How the levels are drawn.
    seed : int or numpy.random.SeedSequence
        Seed; the same arguments give the same matrix.
    targets : sequence of int, optional
        Node indices (0-based, distinct) that may be perturbed; default all n nodes.

    Returns
    -------
    U : ndarray of float64, shape (M, n)
        Row c is the perturbation of condition c; 1 to max_targets nonzeros per row, all in (low, high].

    Raises
    ------
    ConfigError
        An invalid argument; the message names it.
    """
    n = check_int("n", n, minimum=1)
    M = check_int("M", M, minimum=1)
    low = check_float("low", low)
    high = check_float("high", high)
    if not low < high:
        raise ConfigError(f"low must be < high, got low={low:g}, high={high:g}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    allowed = _check_targets(targets, n)
    max_targets = check_int("max_targets", max_targets, minimum=1)
    if max_targets > allowed.size:
        raise ConfigError(f"max_targets={max_targets} exceeds the {allowed.size} node(s) that may be perturbed")
    target_stream, level_stream = seed_sequence(seed).spawn(2)

    rng = np.random.default_rng(target_stream)
    chosen = np.zeros((M, n), dtype=bool)
    for c in range(M):
        k = rng.integers(1, max_targets, endpoint=True)
        chosen[c, rng.choice(allowed, size=k, replace=False)] = True

    rng = np.random.default_rng(level_stream)
    # 1 - random() lies in (0, 1], so every level is in (low, high] and never exactly low.
    fraction = 1.0 - rng.random((M, n))
    if method == "lhs":
        bins = np.stack([rng.permutation(M) for _ in range(n)], axis=1)  # (M, n), each column a permutation
        fraction = (bins + fraction) / M
    return np.where(chosen, low + (high - low) * fraction, 0.0)


def _check_targets(targets, n: int) -> np.ndarray:
    """Return the allowed target indices as an int array; ConfigError names ``targets`` when invalid."""
    if targets is None:
        return np.arange(n)
    values = list(targets)
    if not values:
        raise ConfigError("targets must name at least one node")
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ConfigError(f"targets must be node indices (integers), got {v!r}")
        if not 0 <= v < n:
            raise ConfigError(f"targets: index {v} is out of range for {n} nodes")
    if len(set(int(v) for v in values)) != len(values):
        raise ConfigError("targets must not repeat a node")
    return np.asarray(values, dtype=np.int64)


def observation_times(tfinal: float, T: int) -> np.ndarray:
    """Evenly spaced observation times, t_0 = 0 excluded.

    Parameters
    ----------
    tfinal : float
        Last time (> 0).
    T : int
        Number of time points (>= 1).

    Returns
    -------
    t : ndarray of float64, shape (T,)
        tfinal * k / T for k = 1..T; strictly increasing, t[-1] == tfinal.
    """
    tfinal = check_float("tfinal", tfinal, minimum=0.0, strict=True)
    T = check_int("T", T, minimum=1)
    return tfinal * (np.arange(1, T + 1) / T)  # k / T is exactly 1 at k = T, so t[-1] == tfinal
