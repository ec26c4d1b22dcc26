"""Forward-solve throughput of cellbox_nb.solve on the benchmark grid; one JSON object per line on stdout.

    python bench/bench_solve.py                  # full grid (a few minutes)
    python bench/bench_solve.py --sizes 7,19     # a subset
    python bench/bench_solve.py --quick          # smoke run

See bench/README.md for the fields.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from problems import GRID, make_model, parse_sizes  # noqa: E402


def bench_size(n, M, T, args, machine, versions):
    from cellbox_nb import solve

    load_start = common.loadavg()
    common.log(f"[solve] n={n} M={M} T={T}: problem")
    W, alpha, U, t, _ = make_model(n, M, T, seed=args.seed)  # the data Y is not needed here
    first = {"first_call_s": None, "cache_files": None, "cache_empty": None, "first_call_fresh_s": None,
             "import_s": None}
    if not (args.quick or args.no_first_call):
        common.log(f"[solve] n={n}: first calls in fresh interpreters")
        first = common.first_calls({"W": W, "alpha": alpha, "U": U, "t": t}, "solve", args.rtol, args.atol)

    def call():
        return solve(W, alpha, U, t, rtol=args.rtol, atol=args.atol, full_output=True)

    _, (_, info) = common.timed(call)  # warm-up: the first call in this process loads the kernels
    one = common.timed(call)[0]  # estimate of one call, to choose the repeats
    repeats = args.repeats or (3 if args.quick else common.choose_repeats(one))
    common.log(f"[solve] n={n}: {repeats} repeats of ~{one:.3g} s")
    times = [common.timed(call)[0] for _ in range(repeats)]
    steady = float(np.median(times))
    stats = info["stats"]
    compile_s = None if first["first_call_fresh_s"] is None else first["first_call_fresh_s"] - steady
    return {
        "bench": "solve", "n": n, "M": M, "T": T, "rtol": args.rtol, "atol": args.atol,
        "compile_s": compile_s, "first_call_fresh_s": first["first_call_fresh_s"],
        "first_call_s": first["first_call_s"], "cache_empty": first["cache_empty"],
        "cache_files": first["cache_files"], "import_s": first["import_s"],
        "steady_s": steady, "min_s": float(np.min(times)), "max_s": float(np.max(times)), "repeats": repeats,
        "steps_per_cond": float(stats[:, 0].mean()), "rejected_per_cond": float(stats[:, 1].mean()),
        "fev_per_cond": float(stats[:, 2].mean()),
        "threads": common.threads(), "loadavg_start": load_start, "loadavg_end": common.loadavg(),
        "machine": machine, "versions": versions,
    }


def main(argv=None):
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    sizes = parse_sizes(args.sizes, GRID) if args.sizes else (parse_sizes("7,19,99", GRID) if args.quick else GRID)
    common.apply_threads(args.threads)
    machine, versions = common.machine(), common.versions()
    for n, M, T in sizes:
        common.emit(bench_size(n, M, T, args, machine, versions))


if __name__ == "__main__":
    main()
