"""Steady-state initialisation (config key ``init: steady_state``): W and alpha from the last observation time.

If the responses have settled by the last observation time t_T, each training condition m gives, for every node i,
the steady-state equation of the model (decay 1)

    y_mi = alpha_i tanh(w_i . y_m - u_mi),

which for a fixed alpha_i is a linear regression of atanh(y_mi / alpha_i) + u_mi on y_m: one small regression per
row of W, with no ODE solve.  Its solution is a starting point that sits in the basin of the truth where gradient
descent from W = 0 does not: on the bifurcating BF network (two attractors) the fit from zeros ends at r(W) 0.74-0.88,
this start at 0.95 before any training (bench/RESULTS.md, ninth session).  It is only a start: the fit that follows
uses every time point.

Steps: (1) a common gain a for all nodes, from a grid of 25 values between 1.05 and 20 times the largest |y|,
each with the ridge-regularised linear regressions of every row (atanh argument clipped to +-0.99), keeping the a
with the smallest squared residual in y; (2) for each row, a nonlinear least-squares fit of (w_i, alpha_i) to the
residuals y_mi - alpha_i tanh(w_i . y_m - u_mi) plus the ridge term, started there, with alpha_i bounded to
[a / 2, 2 a] (a lone node with tiny responses would otherwise trade alpha_i -> infinity against w_i -> 0).
Entries fixed at zero by the W mask stay zero.  Conditions with a missing value at t_T are left out.
"""

import numpy as np

from ..errors import ConfigError

RIDGE = 1e-2  # ridge weight on w_i (responses are O(0.1-1); keeps rows with few informative conditions bounded)
GRID = np.geomspace(1.05, 20.0, 25)  # common gains, in units of max |y|
CLIP = 0.99


def steady_state_init(U, Y, mask=None, w_mask=None, alpha=None, ridge=RIDGE):
    """(W (n, n), alpha (n,)) from the last time point of Y (M, T, n) and the perturbations U (M, n).

    mask: (M, T, n) bool observed entries (None = all); w_mask: (n, n) bool free entries of W (None = all);
    alpha: (n,) gains to keep fixed (when alpha is not learned; None = fit them as the module docstring says).

    Raises
    ------
    ConfigError
        Fewer than two conditions are fully observed at the last time point, or every response there is zero.
    """
    from scipy.optimize import least_squares

    U = np.asarray(U, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    M, T, n = Y.shape
    keep = np.ones(M, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)[:, -1, :].all(axis=1)
    if keep.sum() < 2:
        raise ConfigError("init steady_state: needs at least two training conditions observed at every node at the "
                          f"last time point ({int(keep.sum())} are)")
    ys, us = Y[keep, -1, :], U[keep]
    amax = float(np.max(np.abs(ys)))
    if not amax > 0.0:
        raise ConfigError("init steady_state: every response at the last time point is zero")
    free = np.ones((n, n), dtype=bool) if w_mask is None else np.asarray(w_mask, dtype=bool)

    def row_lstsq(i, a):
        cols = np.flatnonzero(free[i])
        w = np.zeros(n)
        if cols.size:
            A = np.vstack([ys[:, cols], np.sqrt(ridge) * np.eye(cols.size)])
            b = np.concatenate([np.arctanh(np.clip(ys[:, i] / a, -CLIP, CLIP)) + us[:, i], np.zeros(cols.size)])
            w[cols] = np.linalg.lstsq(A, b, rcond=None)[0]
        return w

    def refine(i, w0, a0, bounds):
        """Row i's nonlinear least squares from (w0, a0): over (w_i, alpha_i) within bounds of alpha_i, or, with
        bounds None, over w_i alone at the fixed gain a0."""
        cols = np.flatnonzero(free[i])

        def resid(p):
            w, a = (p[:-1], p[-1]) if bounds is not None else (p, a0)
            return np.concatenate([ys[:, i] - a * np.tanh(ys[:, cols] @ w - us[:, i]), np.sqrt(ridge) * w])

        if bounds is None:
            return least_squares(resid, w0[cols]).x, a0
        lo = np.r_[np.full(cols.size, -np.inf), bounds[0]]
        hi = np.r_[np.full(cols.size, np.inf), bounds[1]]
        x = least_squares(resid, np.r_[w0[cols], a0], bounds=(lo, hi)).x
        return x[:-1], x[-1]

    W = np.zeros((n, n))
    if alpha is not None:  # fixed gains: the row regressions, then each row's w_i by nonlinear least squares
        alpha = np.array(alpha, dtype=np.float64)
        for i in range(n):
            if free[i].any():
                W[i, free[i]] = refine(i, row_lstsq(i, alpha[i]), alpha[i], None)[0]
        return W, alpha
    best = None
    for a in amax * GRID:
        Wa = np.array([row_lstsq(i, a) for i in range(n)])
        r = float(np.sum((ys - a * np.tanh(ys @ Wa.T - us)) ** 2))
        if best is None or r < best[0]:
            best = (r, a, Wa)
    _, a, W0 = best
    alpha = np.full(n, a)
    for i in range(n):
        W[i, free[i]], alpha[i] = refine(i, W0[i], a, (0.5 * a, 2.0 * a))
    return W, alpha
