"""Two versions of the package timed in one process, calls interleaved: the A/B comparison this noisy machine needs
(separate processes run one after the other disagreed by up to 15 %). One JSON object per size on stdout.

    python bench/ab_versions.py HEAD~1 HEAD                       # loss + gradient and solve, n = 7, 19, 99
    python bench/ab_versions.py HEAD worktree --sizes 19,24:100:5 --adjoint discrete

Each version (a git revision, or ``worktree`` for the files as they are) is exported with ``git archive`` into a
temporary folder under the name ``cbv0``, ``cbv1`` (the package imports itself only relatively, so renamed copies
load side by side); each copy compiles its kernels into its own cache on first use (about a minute each). For each
size, the problem is made once; then ``--rounds`` rounds, each calling every version ``--repeats`` times
(loss_and_grad then solve). Fields: per version ``lg_s`` and ``fwd_s`` (medians), ``lg_rel`` (its lg_s over the
first version's), ``ratio`` (lg_s / fwd_s), and ``same_bits`` (whether its gradient equals the first version's bit
for bit).
"""

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from problems import make_problem, parse_sizes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export(rev, dest, name):
    """Copy the package at git revision ``rev`` (or the working tree for ``worktree``) to dest/name."""
    target = os.path.join(dest, name)
    if rev == "worktree":
        shutil.copytree(os.path.join(ROOT, "cellbox_nb"), target,
                        ignore=shutil.ignore_patterns("__pycache__"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "cellbox_nb"], capture_output=True, check=False)
        if archive.returncode != 0:
            raise SystemExit(f"git archive {rev}: {archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        shutil.move(os.path.join(tmp, "cellbox_nb"), target)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("revs", nargs=2, help="two git revisions (or 'worktree'); the first is the baseline")
    ap.add_argument("--sizes", default="7,19,99", help="grid sizes or n:M:T triples (bench/problems.py)")
    ap.add_argument("--adjoint", choices=("interpolating", "discrete"), default="interpolating")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=None, help="calls per version and round (default: by size)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cellbox_ab_")
    try:
        names = []
        for i, rev in enumerate(args.revs):
            names.append(f"cbv{i}")
            export(rev, tmp, names[-1])
        sys.path.insert(0, tmp)
        mods = [importlib.import_module(name) for name in names]
        for n, M, T in parse_sizes(args.sizes):
            p = make_problem(n, M, T, seed=args.seed)
            W, alpha, U, t, Y = p["W"], p["alpha"], p["U"], p["t"], p["Y"]
            grads = []
            for m in mods:  # first calls: load or compile
                grads.append(m.loss_and_grad(W, alpha, U, t, Y, adjoint=args.adjoint)[1]["W"])
                m.solve(W, alpha, U, t)
            one = common.timed(lambda: mods[0].loss_and_grad(W, alpha, U, t, Y, adjoint=args.adjoint))[0]
            repeats = args.repeats or max(3, min(100, int(0.2 / max(one, 1e-6))))
            tg = [[] for _ in mods]
            tf = [[] for _ in mods]
            for _ in range(args.rounds):
                for k, m in enumerate(mods):
                    for _ in range(repeats):
                        tg[k].append(common.timed(lambda: m.loss_and_grad(W, alpha, U, t, Y,
                                                                           adjoint=args.adjoint))[0])
                        tf[k].append(common.timed(lambda: m.solve(W, alpha, U, t))[0])
            lg = [float(np.median(v)) for v in tg]
            fwd = [float(np.median(v)) for v in tf]
            versions = [{"rev": rev, "lg_s": lg[k], "fwd_s": fwd[k], "lg_rel": lg[k] / lg[0], "ratio": lg[k] / fwd[k],
                         "same_bits": bool(np.array_equal(grads[k], grads[0]))} for k, rev in enumerate(args.revs)]
            common.log(f"[ab] n={n}: " + "; ".join(f"{v['rev']} lg {v['lg_s'] * 1e3:.3f} ms ({v['lg_rel']:.3f}) "
                                                   f"ratio {v['ratio']:.2f}" for v in versions))
            common.emit({"bench": "ab_versions", "n": n, "M": M, "T": T, "adjoint": args.adjoint,
                         "rounds": args.rounds, "repeats": repeats, "versions": versions,
                         "loadavg": common.loadavg(), "machine": common.machine()})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
