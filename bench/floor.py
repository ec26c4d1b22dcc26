"""This machine's floor rates for the solver's work: float64 matrix products at the grid's shapes and one large
square one, tanh throughput, memory bandwidth (cellbox_nb.floor; `cellbox-nb bench --floor` prints the same).
Prints one JSON object on stdout.

    python bench/floor.py                       # grid shapes, 2000 x 2000 GEMM, 4 Mi tanh, 512 MiB copy
    python bench/floor.py --sizes 99,300 --square 4000 --budget 1

Fields: see cellbox_nb/floor.py (gemm, gemm_square, matvec_1thread, tanh, copy, per_rhs).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from problems import GRID, parse_sizes  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="grid n values (or n:M:T) for the GEMM shapes (default: all)")
    parser.add_argument("--square", type=int, default=2000, help="n of the large square GEMM (default 2000)")
    parser.add_argument("--tanh-size", type=int, default=1 << 22, help="elements of the tanh array (default 4 Mi)")
    parser.add_argument("--copy-mb", type=int, default=512, help="MiB of the copied array (default 512)")
    parser.add_argument("--budget", type=float, default=0.5, help="seconds of repeats per figure (default 0.5)")
    args = parser.parse_args(argv)
    from cellbox_nb.floor import measure

    grid = parse_sizes(args.sizes, GRID) if args.sizes else GRID
    rec = measure(grid=grid, square=args.square, tanh_size=args.tanh_size, copy_mb=args.copy_mb,
                  budget_s=args.budget)
    common.emit(rec | {"machine": common.machine(), "versions": common.versions(), "loadavg": common.loadavg(),
                       "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


if __name__ == "__main__":
    main()
