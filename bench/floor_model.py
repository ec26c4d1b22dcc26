"""Floor model: how far each loss+gradient time is from what this machine's matrix products and tanh allow.

For each grid size, one ``loss_and_grad(full_output=True)`` call gives the work the solver does (its step and
right-hand-side counts do not depend on timing); the work implies

* flops: 2 n^2 per condition and right-hand side of the forward pass (W x) and of the backward pass (W^T g), and
  2 n^2 per rank-one term g x^T of the dL/dW quadrature (counted by the solver: six per accepted backward step, or
  fewer where it groups them per forward step, n >= 24);
* tanh evaluations: n per right-hand side of the forward pass, and n per accepted forward step for the middle node
  of the tanh interpolant the forward pass stores; the backward pass evaluates none (it reads tanh(z) from that
  store);

(with ``--adjoint discrete`` the backward pass's "right-hand sides" are its products W^T g, six per accepted forward
step, its quadrature terms six per step, and it reads tanh at the forward's own stages from the store)

and the floor is flops / (measured matrix-product rate) + tanh evaluations x (measured ns per tanh) / cores.  The
matrix-product rate is numpy's BLAS on all cores for (n, n) @ (n, M), the shape of one stage of all conditions
(cellbox_nb.floor.gemm); the tanh rate is the engine's own vectorised tanh on one core.  Everything else the solver
does (stage sums, error norms, dense output, step control) counts as overhead above the floor.

The measured time is the median of loss+gradient calls in the same run.  Prints JSON lines, one per size, then a
markdown table on stderr.

    python bench/floor_model.py [--sizes 7,19,99,300,1000] [--threads 2] [--budget 3] [--adjoint discrete]
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import apply_threads  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="7,19,99,300,1000")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of repeats per size (at least 3 calls)")
    ap.add_argument("--adjoint", choices=("interpolating", "discrete"), default="interpolating")
    args = ap.parse_args()
    apply_threads(args.threads)
    from cellbox_nb import api, floor
    from cellbox_nb.benchmark import GRID, loadavg, machine, make_problem, parse_sizes, threads, versions

    sizes = parse_sizes(args.sizes, GRID)
    cores = len(os.sched_getaffinity(0))
    tanh = floor.tanh_rate(budget_s=0.5)
    tanh_ns = tanh["core_ns"] if tanh["core_ns"] is not None else tanh["numba_libm_ns"]
    rows = []
    for n, M, T in sizes:
        P = make_problem(n, M, T)
        call = lambda: api.loss_and_grad(P["W"], P["alpha"], P["U"], P["t"], P["Y"], full_output=True,  # noqa
                                         adjoint=args.adjoint)
        _, _, info = call()
        s = info["stats"].astype(float)
        fwd_acc, fwd_fev, bwd_fev, bwd_acc, quad_terms = (s[:, 0].sum(), s[:, 2].sum(), s[:, 5].sum(), s[:, 3].sum(),
                                                          s[:, 6].sum())
        flops_fwd = 2.0 * n * n * fwd_fev
        flops_bwd = 2.0 * n * n * bwd_fev
        flops_quad = 2.0 * n * n * quad_terms
        tanh_evals = n * (fwd_fev + (0.0 if args.adjoint == "discrete" else fwd_acc))
        gemm = floor.gemm([(n, M)], budget_s=0.5)[0]["gflops"]
        flops = flops_fwd + flops_bwd + flops_quad
        floor_s = flops / (gemm * 1e9) + tanh_evals * tanh_ns * 1e-9 / cores
        times = []
        t_end = time.perf_counter() + args.budget
        while len(times) < 3 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        measured = float(np.median(times))
        row = {"bench": "floor_model", "adjoint": args.adjoint, "n": n, "M": M, "T": T, "fwd_rhs_per_cond": fwd_fev / M,
               "bwd_rhs_per_cond": bwd_fev / M, "bwd_steps_per_cond": bwd_acc / M,
               "quad_terms_per_cond": quad_terms / M, "gflop": flops / 1e9,
               "gflop_fwd": flops_fwd / 1e9, "gflop_bwd": flops_bwd / 1e9, "gflop_quad": flops_quad / 1e9,
               "tanh_evals": tanh_evals, "gemm_gflops": gemm, "tanh_ns": tanh_ns, "cores": cores,
               "floor_s": floor_s, "measured_s": measured, "measured_over_floor": measured / floor_s,
               "achieved_gflops": flops / measured / 1e9, "repeats": len(times), "threads": threads(),
               "loadavg": loadavg(), "machine": machine(), "versions": versions()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| n | M | T | RHS/cond fwd + bwd | GFLOP | tanh evals | GEMM GFLOP/s | floor s | measured s | "
          "measured / floor |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        print(f"| {r['n']} | {r['M']} | {r['T']} | {r['fwd_rhs_per_cond']:.0f} + {r['bwd_rhs_per_cond']:.0f} | "
              f"{r['gflop']:.3g} | {r['tanh_evals']:.3g} | {r['gemm_gflops']:.1f} | {r['floor_s']:.4g} | "
              f"{r['measured_s']:.4g} | {r['measured_over_floor']:.2f} |", file=sys.stderr)


if __name__ == "__main__":
    main()
