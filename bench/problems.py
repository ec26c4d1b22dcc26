"""Seeded benchmark problems shared by the bench scripts (docs: bench/README.md).

The family is the one the peer timings in the engineering notes (section 7) were measured on:

* W: sparse random, each node receives about 3 in-edges (3 distinct source nodes other than itself, fewer when
  n < 4) with N(0, 1) weights, then scaled so its spectral radius is 0.9;
* alpha ~ U[0.5, 1.5];
* U: each condition perturbs 1 or 2 nodes (equally likely) at levels drawn from U(0, 1];
* t_k = 20 k / T, k = 1..T;
* data Y = solve(0.9 * W, alpha, U, t) + N(0, noise^2) noise, so the model with the true W does not fit the
  data exactly and the loss gradient is nonzero.

Everything is drawn from ``numpy.random.default_rng([seed, n, M, T])``, so a size's problem depends only on the
seed and the size, not on which other sizes are run.
"""

import numpy as np

TFINAL = 20.0
RHO = 0.9
IN_EDGES = 3
DATA_W_SCALE = 0.9
NOISE = 0.01


def make_model(n, M, T, seed=0):
    """Return (W (n, n), alpha (n,), U (M, n), t (T,)) and the generator, ready to draw the data noise."""
    rng = np.random.default_rng([seed, n, M, T])
    W = np.zeros((n, n))
    k = min(IN_EDGES, n - 1)
    for i in range(n):
        if k > 0:
            src = rng.choice(np.delete(np.arange(n), i), size=k, replace=False)
            W[i, src] = rng.normal(size=k)
    rho = float(np.max(np.abs(np.linalg.eigvals(W)))) if n > 1 else 0.0
    if rho > 0.0:
        W *= RHO / rho
    alpha = rng.uniform(0.5, 1.5, n)
    U = np.zeros((M, n))
    for c in range(M):
        m = min(int(rng.integers(1, 3)), n)
        U[c, rng.choice(n, size=m, replace=False)] = 1.0 - rng.random(m)  # U(0, 1]
    t = TFINAL * np.arange(1, T + 1) / T
    return W, alpha, U, t, rng


def make_problem(n, M, T, seed=0, rtol=1e-6, atol=1e-8):
    """The full problem as a dict with W, alpha, U, t and the data Y (M, T, n).

    Y is solved at the given tolerances (it imports cellbox_nb, so the solver is compiled or loaded here).
    """
    from cellbox_nb import solve

    W, alpha, U, t, rng = make_model(n, M, T, seed)
    Y = solve(DATA_W_SCALE * W, alpha, U, t, rtol=rtol, atol=atol)
    Y = Y + NOISE * rng.normal(size=Y.shape)
    return {"W": W, "alpha": alpha, "U": U, "t": t, "Y": Y}


def parse_sizes(text, grid):
    """``"7,19"`` -> the grid entries (n, M, T) whose n is listed, in the order given."""
    by_n = {g[0]: g for g in grid}
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        if not tok.isdigit() or int(tok) not in by_n:
            raise SystemExit(f"--sizes: {tok!r} is not one of {', '.join(str(g[0]) for g in grid)}")
        out.append(by_n[int(tok)])
    return out


GRID = [(7, 30, 5), (19, 120, 5), (99, 89, 5), (300, 100, 5), (1000, 50, 5)]
