"""Run under ``mpirun -n 2`` by tests/test_mpi.py: the condition-split loss, gradient and solve
(cellbox_nb.fit.mpi.Conditions) on fixed problems; rank 0 saves the results to the .npz file named on the command
line.  Not a test module itself (pytest does not collect it)."""

import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(__file__))

from conftest import random_problem  # noqa: E402

from cellbox_nb.api import SolveError  # noqa: E402
from cellbox_nb.fit.mpi import Conditions  # noqa: E402


def problem(M, seed):
    W, alpha, U, t = random_problem(7, M, seed=seed)
    rng = np.random.default_rng(seed + 100)
    Y = rng.normal(scale=0.3, size=(M, t.size, 7))
    mask = rng.random(Y.shape) > 0.25
    return W + 0.1 * rng.normal(size=W.shape), alpha, U, t, Y, mask


def main(path):
    par = Conditions(MPI.COMM_WORLD)
    out = {}
    # 9 conditions: blocks of 4 and 5; a mask with missing entries; both losses
    W, alpha, U, t, Y, mask = problem(9, 3)
    for loss in ("mae", "mse"):
        L, g = par.loss_and_grad(W, alpha, U, t, Y, mask=mask, loss=loss, decay=np.full(7, 1.1))
        out[f"{loss}_L"] = L
        for k, v in g.items():
            out[f"{loss}_{k}"] = v
    out["X"] = par.solve(W, alpha, U, t)
    # rank 0's block observes nothing; one condition for two ranks (rank 0's block is empty)
    mask0 = mask.copy()
    mask0[:par.block(9, 0)[1]] = False
    out["mask0_L"], g = par.loss_and_grad(W, alpha, U, t, Y, mask=mask0)
    out["mask0_W"] = g["W"]
    out["one_L"], g = par.loss_and_grad(W, alpha, U[:1], t, Y[:1], mask=mask[:1])
    out["one_W"] = g["W"]
    out["one_X"] = par.solve(W, alpha, U[:1], t)
    # a solver failure on one rank only (rank 1 allows one step): every rank raises, none waits forever
    try:
        par.loss_and_grad(W, alpha, U, t, Y, mask=mask, max_steps=1 if par.rank == 1 else 20000)
        out["failure_raised"] = False
    except SolveError:
        out["failure_raised"] = True
    flags = MPI.COMM_WORLD.gather(out["failure_raised"], root=0)
    if par.is_root:
        out["failure_raised_all"] = all(flags)
        out["size"] = par.size
        np.savez(path, **out)


if __name__ == "__main__":
    main(sys.argv[1])
