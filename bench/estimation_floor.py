"""What the paper-table data can determine: the Cramer-Rao floor of the test MAE and the r(W) an efficient
estimator would reach, for each network and seed of bench/paper_tables.py.

For the data of a paper-table fit (same network, seed, conditions, split, noise sd s), the model's responses on the
training conditions X(theta), theta = (vec W, alpha), have the Jacobian J at the true parameters (central
differences of cellbox_nb.solve at rtol 1e-11, step 1e-5).  With additive Gaussian noise the Fisher information is
F = J^T J / s^2, and an unbiased estimator's covariance is at least F^-1 (Cramer-Rao; maximum likelihood reaches it
as the data grow).  Propagated to the test conditions (Jacobian J_test), the test responses' errors have standard
deviations sd_e = sqrt(diag(J_test F^-1 J_test^T)), so the expected test MAE against the clean responses is at least

    MAE_floor = sqrt(2 / pi) * mean_e sd_e.

The expected r(W) of an efficient estimator is the median over 200 draws theta_true + N(0, F^-1) of Pearson r
between the drawn W and the true W.  Both are computed twice: for the full model (n^2 + n parameters, what the
paper tables fit) and for an estimator that knows the true support of W (edges + n parameters; what prune and
refit aims at).  Caveats: the floor is linearised (asymptotic), holds for unbiased estimators (shrinkage can
trade bias for variance), and directions with no information (eigenvalues of F below 1e-12 of the largest) are
left out of F^-1, which makes the floor optimistic there; an MAE (least absolute deviations) fit of Gaussian
noise has about pi/2 times the variance of the maximum-likelihood (MSE) fit; BF's responses switch attractors
under small changes of W (bench/RESULTS.md), so the linearisation does not describe it.

Usage:  python bench/estimation_floor.py [--networks LI,CY] [--seeds 0,1,2] [--draws 200]
Prints one JSON line per network and seed, then a Markdown table of the medians over seeds.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from paper_tables import SETUP, TRAIN, medians_by_network  # noqa: E402

from cellbox_nb import solve  # noqa: E402
from cellbox_nb.data.dataset import simulate  # noqa: E402
from cellbox_nb.data.network import load_network  # noqa: E402
from cellbox_nb.fit.config import resolve  # noqa: E402
from cellbox_nb.fit.splits import make_split  # noqa: E402

STEP = 1e-5
RTOL, ATOL = 1e-11, 1e-13
RCOND = 1e-12


def jacobian(W, alpha, U, t, cols):
    """d vec X(theta) / d theta[cols] at theta = (vec W, alpha), central differences; (M T n, len(cols))."""
    n = W.shape[0]
    base = np.concatenate([W.ravel(), alpha])
    out = np.empty((U.shape[0] * t.size * n, len(cols)))
    for j, c in enumerate(cols):
        xs = []
        for sign in (1.0, -1.0):
            th = base.copy()
            th[c] += sign * STEP
            xs.append(solve(th[:n * n].reshape(n, n), th[n * n:], U, t, rtol=RTOL, atol=ATOL))
        out[:, j] = ((xs[0] - xs[1]) / (2.0 * STEP)).ravel()
    return out


def floors(W, alpha, U_train, U_test, t, noise, cols, draws, rng):
    """(MAE floor, median r(W) of an efficient estimator, information-free directions) for parameters cols."""
    n = W.shape[0]
    J = jacobian(W, alpha, U_train, t, cols)
    Jt = jacobian(W, alpha, U_test, t, cols)
    ev, V = np.linalg.eigh(J.T @ J / noise**2)
    keep = ev > RCOND * ev.max()
    Vk, evk = V[:, keep], ev[keep]
    A = Jt @ Vk  # test responses along the informative eigendirections
    sd = np.sqrt(np.sum(A * A / evk, axis=1))
    mae = float(np.sqrt(2.0 / np.pi) * sd.mean())
    theta = np.concatenate([W.ravel(), alpha])
    rs = []
    for _ in range(draws):
        th = theta.copy()
        th[cols] += Vk @ (rng.standard_normal(evk.size) / np.sqrt(evk))
        rs.append(np.corrcoef(th[:n * n], W.ravel())[0, 1])
    return mae, float(np.median(rs)), int((~keep).sum())


def run_one(name, seed, draws):
    T, ntr, nva, nte, noise, k = SETUP[name]
    net = load_network(name)
    n = net.n
    ds = simulate(net, conditions=ntr + nva + nte, times=T, noise=noise, max_targets=k, seed=seed)
    cfg = resolve(TRAIN, {"n_val": nva, "n_test": nte, "split_seed": seed, "seed": seed})
    train, _, test = make_split(ds, cfg)
    full = list(range(n * n + n))
    support = [i for i in range(n * n) if net.W.ravel()[i] != 0] + list(range(n * n, n * n + n))
    row = {"network": name, "n": n, "edges": int(np.count_nonzero(net.W)), "seed": seed, "noise": noise,
           "conditions": [ntr, nva, nte], "T": T}
    for label, cols in (("full", full), ("support", support)):
        mae, r, null = floors(net.W, net.alpha, ds.U[train], ds.U[test], ds.t, noise, cols, draws,
                              np.random.default_rng(seed))
        row.update({f"mae_floor_{label}": mae, f"r_eff_{label}": r, f"null_dirs_{label}": null,
                    f"params_{label}": len(cols)})
    return row


def markdown(rows):
    out = ["| network | n | edges | noise | train | test MAE floor, full model | test MAE floor, true support | "
           "r(W) efficient, full | r(W) efficient, support |", "|---|---|---|---|---|---|---|---|---|"]
    keys = ("mae_floor_full", "mae_floor_support", "r_eff_full", "r_eff_support")
    for name, r0, med in medians_by_network(rows, keys):
        out.append(f"| {name} | {r0['n']} | {r0['edges']} | {r0['noise']:g} | {r0['conditions'][0]} | "
                   f"{med['mae_floor_full']:.2e} | {med['mae_floor_support']:.2e} | {med['r_eff_full']:.3f} | "
                   f"{med['r_eff_support']:.3f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=",".join(SETUP))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    for name in args.networks.split(","):
        if name not in SETUP:
            raise SystemExit(f"--networks: unknown network {name!r} (known: {', '.join(SETUP)})")
        for seed in map(int, args.seeds.split(",")):
            row = run_one(name, seed, args.draws)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"total_wall_s": time.perf_counter() - t0,
                      "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}))
    print(markdown(rows))


if __name__ == "__main__":
    sys.exit(main())
