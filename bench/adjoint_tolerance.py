"""What the interpolating adjoint's tolerance buys: for each grid size and adjoint_rtol, the gradient's relative
error to a tight reference, the backward steps per condition, and loss + gradient time over the forward solve.
One JSON object per (size, setting) on stdout; see bench/README.md.

    python bench/adjoint_tolerance.py                            # n = 7, 19, 99; adjoint_rtol 1e-7 .. 1e-4
    python bench/adjoint_tolerance.py --sizes 7 --adjoint-rtols 1e-6,1e-5 --loss mae

The forward pass runs at --rtol/--atol throughout (default 1e-6 / 1e-8, the library's defaults). Rows:
``setting`` "default" (adjoint_rtol unset, that is rtol), a value of adjoint_rtol, "discrete" (the discrete
adjoint), and "forward_tight" (forward at 1e-10 / 1e-12, adjoint at rtol: the backward pass's own share of the
error). ``grad_err``: ||dL/dW - ref|| / ||ref|| with ref from loss_and_grad at rtol = adjoint_rtol = 1e-11,
atol 1e-13. ``ratio``: median loss + gradient time over the median forward solve time, calls interleaved (null
with --no-timing).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from problems import make_problem, parse_sizes  # noqa: E402

TIGHT = {"rtol": 1e-11, "atol": 1e-13, "adjoint_rtol": 1e-11}


def rows_for_size(n, M, T, args):
    from cellbox_nb import loss_and_grad, solve

    p = make_problem(n, M, T, seed=args.seed)
    W, alpha, U, t, Y = p["W"], p["alpha"], p["U"], p["t"], p["Y"]
    _, ref = loss_and_grad(W, alpha, U, t, Y, loss=args.loss, **TIGHT)
    base = {"rtol": args.rtol, "atol": args.atol}
    settings = [("default", {})] + [(f"{a:g}", {"adjoint_rtol": a}) for a in args.adjoint_rtols]
    settings += [("discrete", {"adjoint": "discrete"}),
                 ("forward_tight", {"rtol": 1e-10, "atol": 1e-12, "adjoint_rtol": args.rtol})]

    def fwd():
        return solve(W, alpha, U, t, **base)

    fwd()
    out = []
    for name, extra in settings:
        kw = {**base, **extra}

        def grad(kw=kw):
            return loss_and_grad(W, alpha, U, t, Y, loss=args.loss, full_output=True, **kw)

        _, g, info = grad()
        err = float(np.linalg.norm(g["W"] - ref["W"]) / np.linalg.norm(ref["W"]))
        ratio = None
        if not args.no_timing and name != "forward_tight":
            tf, tg = [], []
            for _ in range(args.repeats):
                tf.append(common.timed(fwd)[0])
                tg.append(common.timed(grad)[0])
            ratio = float(np.median(tg) / np.median(tf))
        s = info["stats"]
        out.append({"bench": "adjoint_tolerance", "n": n, "M": M, "T": T, "loss": args.loss, "setting": name,
                    "rtol": kw["rtol"], "adjoint_rtol": kw.get("adjoint_rtol"), "grad_err": err,
                    "bwd_steps_per_cond": float(s[:, 3].mean()), "ratio": ratio})
        common.log(f"[adjoint_tolerance] n={n} {name}: grad_err {err:.3g}, backward steps "
                   f"{out[-1]['bwd_steps_per_cond']:.1f}, ratio {ratio}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="7,19,99", help="grid sizes (bench/problems.py), default 7,19,99")
    ap.add_argument("--adjoint-rtols", default="1e-7,3e-6,1e-5,3e-5,1e-4",
                    type=lambda s: [float(v) for v in s.split(",")], help="values of adjoint_rtol to try")
    ap.add_argument("--loss", choices=("mse", "mae"), default="mse",
                    help="loss (default mse: a smooth loss, so the error reflects the solvers alone)")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-8)
    ap.add_argument("--repeats", type=int, default=15, help="interleaved timing repeats per setting")
    ap.add_argument("--no-timing", action="store_true", help="errors and steps only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    machine, versions = common.machine(), common.versions()
    for n, M, T in parse_sizes(args.sizes):
        for row in rows_for_size(n, M, T, args):
            common.emit({**row, "machine": machine, "versions": versions})


if __name__ == "__main__":
    main()
