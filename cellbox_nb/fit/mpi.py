"""One fit split across MPI ranks by conditions (optional extra ``[mpi]``: mpi4py).

Every rank holds the whole dataset and the same parameters, takes a contiguous block of each batch's conditions
(rank r of R gets conditions [r M / R, (r + 1) M / R) of the M in the batch), and computes on that block only:

- ``loss_and_grad``: each rank's loss and gradient times its count of observed entries (per-block sums), then one
  ``Allreduce`` (sum) of the flat buffer ``[failed, count, loss sum, dL/dW, dL/dalpha, dL/dd]`` and a division by
  the total count.  The same numbers as one process up to the order of the sum over blocks (about 1e-16 relative);
- ``solve``: each rank solves its block and ``Allgatherv`` assembles X (bitwise the single-process X: the solver
  takes per-condition steps, so a condition's result does not depend on its batch).

A solver failure on any rank is a failure on every rank (the ``failed`` entry), so all ranks reject the same
step and stay in lockstep; every rank then applies the same Adam update.  Only rank 0 writes the results file
(:class:`cellbox_nb.fit.train.Trainer` asks ``is_root``), and a stop request (SIGTERM) counts when any rank has one.
The set-up ends in one collective call (:meth:`Conditions.settle`) where the ranks agree whether each of them
read its inputs and config: an error there ends every rank normally with one report (:func:`abort_on_error`).

Use: ``mpirun -n N cellbox-nb train ...``: the command finds the MPI launcher's environment
(:func:`from_environment`) and trains this way, each rank with its share of the cores as Numba threads
(:func:`rank_threads`) and one BLAS thread.  ``--out`` must be on a file system every rank sees for ``--resume``.
"""

import contextlib
import os
import sys

import numpy as np

from ..api import SolveError, loss_and_grad, solve
from ..core import status as st
from ..errors import EXIT_DATA, CellboxError, ConfigError, InputDataError, Interrupted, NumericalError, describe
from .threads import cores_available, limit_threads

# variables the common MPI launchers set in every rank's environment (Open MPI, MPICH/Hydra and Intel MPI, MVAPICH)
LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_ranks():
    """The world size an MPI launcher announced in the environment (1 when not started by one)."""
    for name in LAUNCHER_SIZE_VARS:
        value = os.environ.get(name, "").strip()
        if value.isdecimal():
            return int(value)
    return 1


class RanksFailed(CellboxError):
    """The ranks' set-up failed on some or all of them, as every rank agreed (:meth:`Conditions.settle`; raised on
    every rank).  ``failures``: ``[(rank, exit code, one-line message), ...]`` in rank order; the exit code is the
    lowest failed rank's; :meth:`lines` words it: one line when every failed rank says the same."""

    def __init__(self, failures, size):
        self.failures = list(failures)
        self.size = size
        self.exit_code = self.failures[0][1]
        super().__init__("; ".join(self.lines()))

    def lines(self):
        """The report's lines (without ``error:``): one per distinct message, naming its ranks unless every rank
        gave it."""
        groups = {}
        for rank, code, text in self.failures:
            groups.setdefault((code, text), []).append(rank)
        out = []
        for (_, text), ranks in groups.items():
            if len(ranks) == self.size:
                out.append(text)
            else:
                out.append(f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}: {text}")
        return out


@contextlib.contextmanager
def abort_on_error(parallel):
    """Run the body (a command's work); with MPI ranks (``parallel`` not None), end every rank with the error's
    exit code and one report, whichever ranks fail:

    - during the set-up (config, data, output checks, up to :meth:`Conditions.settle`, which every rank reaches
      either there or from here), the ranks agree on the outcome; rank 0 alone writes the ``error:`` line (one
      line when the failed ranks say the same; ``rank N:`` names them unless all failed) and every rank exits
      normally (SystemExit) with the exit code of the lowest failed rank;
    - a stop request (Interrupted) and a numerical failure (NumericalError), agreed through collective calls,
      are reported by rank 0 alone (the others exit with the code, silently);
    - any other error after the set-up, which this rank may have met alone, ends the whole job with
      ``MPI_Abort`` and the error's exit code, after this rank's ``error: rank N:`` line (the other ranks would
      otherwise wait in their next collective call forever: a data file missing on one node hung the job)."""
    if parallel is None:
        yield
        return
    try:
        yield
    except RanksFailed as agreed:
        _end_agreed(parallel, agreed)
    except Exception as exc:
        if not parallel.settled:  # the other ranks meet this one in settle (a collective call)
            try:
                parallel.settle(error=exc)
            except RanksFailed as agreed:
                _end_agreed(parallel, agreed)
        if isinstance(exc, (Interrupted, NumericalError)):
            if parallel.is_root:
                raise
            raise SystemExit(exc.exit_code) from None
        code, text, _ = describe(exc)  # the code and wording of the command line's run_command
        sys.stderr.write(f"error: rank {parallel.rank}: {text}\n")
        sys.stderr.flush()
        parallel.comm.Abort(code)
        raise  # pragma: no cover - Abort does not return


def _end_agreed(parallel, agreed):
    if parallel.is_root:
        sys.stderr.write("".join(f"error: {line}\n" for line in agreed.lines()))
        sys.stderr.flush()
    raise SystemExit(agreed.exit_code) from None


def from_environment():
    """A :class:`Conditions` splitter over COMM_WORLD when started by an MPI launcher with more than one rank,
    else None (ConfigError when mpi4py is missing)."""
    if launched_ranks() <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError(f"started by an MPI launcher with {launched_ranks()} ranks, but mpi4py is not installed "
                          f"(pip install 'cellbox-nb[mpi]')") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() <= 1:
        return None
    limit_threads(rank_threads(comm))
    return Conditions(comm)


def rank_threads(comm):
    """Numba threads for this rank: its cores (SLURM_CPUS_PER_TASK or affinity mask) shared with the ranks on the
    same node whose affinity masks overlap its own (all of them when the launcher does not bind ranks to cores)."""
    from mpi4py import MPI

    cores = cores_available()
    mine = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        masks = node.allgather(mine)
    finally:
        node.Free()
    sharing = sum(1 for other in masks if other & mine) if mine else len(masks)
    return max(1, cores // max(1, sharing))


class Conditions:
    """Loss, gradient and solve over a condition axis split across the ranks of ``comm`` (see the module doc)."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.is_root = self.rank == 0
        self.settled = False  # past the set-up's agreement (settle)

    def block(self, M, rank=None):
        """``(lo, hi)``: the contiguous block of M conditions that ``rank`` (default: this rank) takes."""
        r = self.rank if rank is None else rank
        return r * M // self.size, (r + 1) * M // self.size

    def loss_and_grad(self, W, alpha, U, t, Y, *, mask=None, decay=None, **options):
        """:func:`cellbox_nb.api.loss_and_grad` over all ranks' conditions (same arguments, same result)."""
        from mpi4py import MPI

        U = np.asarray(U)
        Y = np.asarray(Y)
        n = U.shape[1]
        lo, hi = self.block(U.shape[0])
        local_mask = None if mask is None else np.asarray(mask)[lo:hi]
        count = float(Y[lo:hi].size if mask is None else np.count_nonzero(local_mask))
        buf = np.zeros(3 + n * n + 2 * n)
        buf[1] = count
        if count > 0:
            try:
                L, g = loss_and_grad(W, alpha, U[lo:hi], t, Y[lo:hi], mask=local_mask, decay=decay, **options)
                buf[2] = L * count
                buf[3:] = np.concatenate([g["W"].ravel(), g["alpha"], g["d"]]) * count
            except SolveError:
                buf[0] = 1.0
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        if buf[0] > 0:
            raise SolveError(f"loss_and_grad failed on {int(buf[0])} of {self.size} MPI ranks", np.zeros(0))
        total = buf[1]
        if total == 0:
            raise InputDataError("mask: no observed entries")
        g = buf[3:] / total
        return buf[2] / total, {"W": g[:n * n].reshape(n, n), "alpha": g[n * n:n * n + n], "d": g[n * n + n:]}

    def solve(self, W, alpha, U, t, *, on_failure="raise", **options):
        """:func:`cellbox_nb.api.solve` over all ranks' conditions (bitwise the single-process X)."""
        from mpi4py import MPI

        U = np.asarray(U)
        M, n, T = U.shape[0], U.shape[1], np.size(t)
        lo, hi = self.block(M)
        X = np.empty((M, T, n))
        status = np.zeros(M, dtype=np.int64)
        if hi > lo:
            Xb, info = solve(W, alpha, U[lo:hi], t, on_failure="nan", full_output=True, **options)
            X[lo:hi] = Xb
            status[lo:hi] = info["status"]
        bounds = [self.block(M, r) for r in range(self.size)]
        sizes = [(b - a) * T * n for a, b in bounds]
        offsets = [a * T * n for a, _ in bounds]
        self.comm.Allgatherv(MPI.IN_PLACE, [X, sizes, offsets, MPI.DOUBLE])
        self.comm.Allgatherv(MPI.IN_PLACE, [status, [b - a for a, b in bounds], [a for a, _ in bounds], MPI.INT64_T])
        if on_failure == "raise" and np.any(status != st.SUCCESS):
            raise SolveError(f"solve failed: {st.describe(status)}", status)
        return X

    def first(self, value):
        """The first value that is not None in rank order, on every rank (a collective call): ranks agree on a
        stop request that reached only some of them."""
        return next((v for v in self.comm.allgather(value) if v is not None), None)

    def settle(self, error=None, digest=None):
        """The end of the set-up, a collective call every rank makes once, before the root writes anything: from
        Trainer.start with the digest of the data this rank read, or from :func:`abort_on_error` with this rank's
        error.  Raises RanksFailed on every rank when any rank failed, or when the ranks read different data."""
        self.settled = True
        mine = (None, digest) if error is None else (describe(error)[:2], None)
        outcomes = self.comm.allgather(mine)
        failures = [(r, *failed) for r, (failed, _) in enumerate(outcomes) if failed is not None]
        if failures:
            raise RanksFailed(failures, self.size)
        other = next((r for r, (_, d) in enumerate(outcomes) if d != outcomes[0][1]), None)
        if other is not None:
            text = (f"MPI ranks 0 and {other} read different data; every rank must read the same dataset (a file "
                    f"on a file system every node sees)")
            raise RanksFailed([(r, EXIT_DATA, text) for r in range(self.size)], self.size)
