"""Lockstep block size: forward and loss+gradient medians for each block size, and OpenBLAS's time per row.

Usage:  python bench/lockstep_block.py [--sizes 99:89:5,150:100:5,300:100:5,400:64:5,500:64:5,1000:50:5]
                                        [--blocks 4,8,16,32] [--repeats 5] [--adjoint discrete] [--no-gemm]

Prints JSON lines: {"bench": "lockstep_block", n, M, T, block, fwd_s, grad_s, default_block, ...} for every size
and block (in one process, interleaved by size, the block set through cellbox_nb.config.LOCKSTEP_BLOCK), then
{"bench": "gemm_rows", n, rows, us_per_call, us_per_row} for one-thread products (rows x n) @ (n x n) as the
lockstep kernels call them (np.dot inside Numba, BLAS on one thread).  The defaults in config.py come from this.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine, threads, timed, versions  # noqa: E402
from problems import make_problem, parse_sizes  # noqa: E402


def median_time(fn, repeats):
    return float(np.median([timed(fn)[0] for _ in range(repeats)]))


def gemm_rows(n, rows_list, calls):
    from numba import njit
    from threadpoolctl import threadpool_limits

    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot calls)

    @njit
    def rep(X, WT, out, m, reps):
        for _ in range(reps):
            np.dot(X[:m], WT, out[:m])

    rng = np.random.default_rng(0)
    WT = rng.random((n, n))
    X = rng.random((max(rows_list), n))
    out = np.empty_like(X)
    with threadpool_limits(1, "blas"):
        for m in rows_list:
            rep(X, WT, out, m, 2)
            t0 = time.perf_counter()
            rep(X, WT, out, m, calls)
            el = (time.perf_counter() - t0) / calls
            print(json.dumps({"bench": "gemm_rows", "n": n, "rows": m, "us_per_call": el * 1e6,
                              "us_per_row": el / m * 1e6}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="99:89:5,150:100:5,300:100:5,400:64:5,500:64:5,1000:50:5")
    ap.add_argument("--blocks", default="4,8,16,32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--adjoint", choices=("interpolating", "discrete"), default="interpolating",
                    help="loss_and_grad's adjoint (the forward column does not depend on it)")
    ap.add_argument("--no-gemm", action="store_true", help="skip the one-thread product timings at the end")
    args = ap.parse_args()
    from cellbox_nb import api, config

    env = {"machine": machine(), "versions": versions(), "threads": threads()}
    blocks = [int(b) for b in args.blocks.split(",")]
    for n, M, T in parse_sizes(args.sizes):
        P = make_problem(n, M, T)
        W, alpha, U, t, Y = P["W"], P["alpha"], P["U"], P["t"], P["Y"]
        config.LOCKSTEP_BLOCK = 0
        default = api._lockstep_block(n)

        def grad_call():
            return api.loss_and_grad(W, alpha, U, t, Y, adjoint=args.adjoint)

        for b in blocks:
            config.LOCKSTEP_BLOCK = b
            api.solve(W, alpha, U, t)
            grad_call()
            fwd = median_time(lambda: api.solve(W, alpha, U, t), args.repeats)
            grad = median_time(grad_call, args.repeats)
            print(json.dumps({"bench": "lockstep_block", "n": n, "M": M, "T": T, "block": b, "fwd_s": fwd,
                              "grad_s": grad, "adjoint": args.adjoint, "default_block": default,
                              "repeats": args.repeats,
                              "loadavg": os.getloadavg()[0], **env}), flush=True)
        config.LOCKSTEP_BLOCK = 0
    if not args.no_gemm:
        gemm_rows(300, [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 32], 2000)


if __name__ == "__main__":
    main()
