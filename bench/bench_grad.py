"""Cost of cellbox_nb.loss_and_grad (MAE) on the benchmark grid, and its ratio to the forward solve measured in the
same process with the calls interleaved; one JSON object per line on stdout.

    python bench/bench_grad.py                   # full grid (several minutes: n = 1000 dominates)
    python bench/bench_grad.py --sizes 7,19,99   # a subset
    python bench/bench_grad.py --quick           # smoke run
    python bench/bench_grad.py --adjoint discrete  # the discrete adjoint instead of the default interpolating one
    python bench/bench_grad.py --adjoint-integrator tsit5  # lam by Tsit5 (default on the cpu: DOP853)

See bench/README.md for the fields.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from problems import GRID, make_problem, parse_sizes  # noqa: E402


def bench_size(n, M, T, args, machine, versions):
    from cellbox_nb import loss_and_grad, solve

    load_start = common.loadavg()
    common.log(f"[grad] n={n} M={M} T={T}: problem")
    p = make_problem(n, M, T, seed=args.seed, rtol=args.rtol, atol=args.atol)
    W, alpha, U, t, Y = p["W"], p["alpha"], p["U"], p["t"], p["Y"]
    first = {"first_call_s": None, "cache_files": None, "cache_empty": None, "first_call_fresh_s": None,
             "import_s": None}
    if not (args.quick or args.no_first_call):
        common.log(f"[grad] n={n}: first calls in fresh interpreters")
        first = common.first_calls(p, "grad", args.rtol, args.atol)

    def fwd():
        return solve(W, alpha, U, t, rtol=args.rtol, atol=args.atol, full_output=True)

    def grad():
        return loss_and_grad(W, alpha, U, t, Y, loss="mae", rtol=args.rtol, atol=args.atol, full_output=True,
                             adjoint=args.adjoint, adjoint_integrator=args.adjoint_integrator)

    _, (_, finfo) = common.timed(fwd)  # warm-ups: the first call in this process loads the kernels
    _, (loss, grads, ginfo) = common.timed(grad)
    one_f = common.timed(fwd)[0]  # estimates of one call, to choose the repeats
    one_g = common.timed(grad)[0]
    repeats = args.repeats or (3 if args.quick else common.choose_repeats(one_f + one_g, budget_s=2.0))
    common.log(f"[grad] n={n}: {repeats} interleaved repeats of ~{one_f:.3g} s (solve) + ~{one_g:.3g} s (grad)")
    tf, tg = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        tf.append(common.timed(fwd)[0])
        tg.append(common.timed(grad)[0])
    fwd_s = float(np.median(tf))
    grad_s = float(np.median(tg))
    s = ginfo["stats"]
    compile_s = None if first["first_call_fresh_s"] is None else first["first_call_fresh_s"] - grad_s
    return {
        "bench": "grad", "n": n, "M": M, "T": T, "rtol": args.rtol, "atol": args.atol, "loss": "mae",
        "adjoint": args.adjoint, "adjoint_integrator": args.adjoint_integrator,
        "compile_s": compile_s, "first_call_fresh_s": first["first_call_fresh_s"],
        "first_call_s": first["first_call_s"], "cache_empty": first["cache_empty"],
        "cache_files": first["cache_files"], "import_s": first["import_s"],
        "steady_s": grad_s, "fwd_s": fwd_s, "ratio": grad_s / fwd_s,
        "ratio_paired_median": float(np.median(np.array(tg) / np.array(tf))),
        "min_s": float(np.min(tg)), "max_s": float(np.max(tg)), "fwd_min_s": float(np.min(tf)),
        "repeats": repeats,
        "steps_per_cond": float(finfo["stats"][:, 0].mean()), "fev_per_cond": float(finfo["stats"][:, 2].mean()),
        "grad_fwd_steps_per_cond": float(s[:, 0].mean()), "grad_fwd_fev_per_cond": float(s[:, 2].mean()),
        "bwd_steps_per_cond": float(s[:, 3].mean()), "bwd_rejected_per_cond": float(s[:, 4].mean()),
        "bwd_fev_per_cond": float(s[:, 5].mean()),
        "loss_value": float(loss), "grad_W_norm": float(np.linalg.norm(grads["W"])),
        "threads": common.threads(), "loadavg_start": load_start, "loadavg_end": common.loadavg(),
        "machine": machine, "versions": versions,
    }


def main(argv=None):
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--adjoint", choices=("interpolating", "discrete"), default="interpolating",
                        help="loss_and_grad's adjoint (default: interpolating, the library's default)")
    parser.add_argument("--adjoint-integrator", choices=("auto", "dop853", "tsit5"), default="auto",
                        help="loss_and_grad's adjoint_integrator (default: auto, the library's default)")
    args = parser.parse_args(argv)
    sizes = parse_sizes(args.sizes, GRID) if args.sizes else (parse_sizes("7,19,99", GRID) if args.quick else GRID)
    common.apply_threads(args.threads)
    machine, versions = common.machine(), common.versions()
    for n, M, T in sizes:
        common.emit(bench_size(n, M, T, args, machine, versions))


if __name__ == "__main__":
    main()
