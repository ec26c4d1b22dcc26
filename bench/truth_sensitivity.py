"""How sensitive are the benchmark networks' responses to small changes of the true W?

For each of the ten networks of bench/paper_tables.py (its data setup, all conditions of a seed), the responses
X(W) at the true W and alpha are compared with those at W + eps * S, where S has independent random signs in every
entry (zeros included, as a fitted W has).  Reported: the median gain max|dX| / eps over conditions and draws, and
the share of conditions that move by more than 0.05.  A well-posed benchmark changes the responses by about eps times a
modest factor; a network whose conditions sit on an unstable equilibrium (x stays at 0 only because some entries
of W are exactly 0) switches attractor under any eps, and no fitted W that is not exactly sparse in the right
places can reproduce those conditions.

Usage:  python bench/truth_sensitivity.py [--networks LI,BF] [--seeds 0,1,2] [--eps 1e-3,1e-2] [--draws 5]
Prints one JSON line per network, seed and eps, then a Markdown table.
"""

import argparse
import json
import sys

import numpy as np

from cellbox_nb import solve
from cellbox_nb.data.dataset import simulate
from cellbox_nb.data.network import load_network

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from paper_tables import SETUP  # noqa: E402

MOVED = 0.05  # share of conditions whose response moves by more than this (max over times and nodes); at
# eps = 1e-3 that needs a gain above 50, i.e. a switch of attractor rather than a smooth change


def one(name, seed, eps, draws):
    T, ntr, nva, nte, noise, k = SETUP[name]
    net = load_network(name)
    ds = simulate(net, conditions=ntr + nva + nte, times=T, noise=noise, max_targets=k, seed=seed)
    W, alpha = ds.W_true, ds.alpha_true
    X0 = solve(W, alpha, ds.U, ds.t, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng([seed, draws, 7])
    moved = []
    for _ in range(draws):
        S = np.where(rng.random(W.shape) < 0.5, -1.0, 1.0)
        X = solve(W + eps * S, alpha, ds.U, ds.t, rtol=1e-10, atol=1e-12)
        moved.append(np.max(np.abs(X - X0), axis=(1, 2)))
    moved = np.array(moved)  # (draws, M)
    return {"network": name, "n": net.n, "seed": seed, "eps": eps, "draws": draws, "conditions": int(ds.U.shape[0]),
            "moved_frac": float(np.mean(moved > MOVED)),
            "median_gain": float(np.median(moved) / eps), "max_change": float(moved.max()),
            "response_scale": float(np.max(np.abs(X0)))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=",".join(SETUP))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--eps", default="1e-3,1e-2")
    ap.add_argument("--draws", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for name in args.networks.split(","):
        for seed in map(int, args.seeds.split(",")):
            for eps in map(float, args.eps.split(",")):
                row = one(name, seed, eps, args.draws)
                rows.append(row)
                print(json.dumps(row), flush=True)
    epss = sorted({r["eps"] for r in rows})
    head = "| network | n | response scale | " + " | ".join(
        f"moved > {MOVED:g} (eps {e:g}) | median gain (eps {e:g})" for e in epss) + " |"
    print(head)
    print("|---" * (3 + 2 * len(epss)) + "|")
    for name in dict.fromkeys(r["network"] for r in rows):
        rs = [r for r in rows if r["network"] == name]
        cells = []
        for e in epss:
            re = [r for r in rs if r["eps"] == e]
            cells.append(f"{np.mean([r['moved_frac'] for r in re]):.0%}")
            cells.append(f"{np.median([r['median_gain'] for r in re]):.2f}")
        print(f"| {name} | {rs[0]['n']} | {np.median([r['response_scale'] for r in rs]):.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
