"""Thread budgets: processes x Numba threads x BLAS threads <= the cores this job was given.

Numba starts ``NUMBA_NUM_THREADS`` threads (default: every CPU of the machine, which under SLURM can be the whole
node) and ``numba.set_num_threads`` can only lower that; BLAS pools size themselves the same way.  The cores a
process was given are ``SLURM_CPUS_PER_TASK`` when set, else the size of its CPU affinity mask (which also
reflects ``taskset``, cgroups cpusets and MPI binding).
"""

import os

from ..errors import ConfigError


def cores_available():
    """Cores this process may use: ``SLURM_CPUS_PER_TASK`` when set, else the size of the CPU affinity mask."""
    value = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if value:
        if not value.isdecimal() or int(value) < 1:
            raise ConfigError(f"SLURM_CPUS_PER_TASK={value!r} is not a positive integer")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def consistent_pool_size():
    """Make ``NUMBA_NUM_THREADS`` in the environment agree with the pool size this process's Numba read at import.

    Numba reads the variable again at every compilation and raises "Cannot set NUMBA_NUM_THREADS to a different
    value once the threads have been launched" when it changed after its thread pool started.  A process whose
    environment was edited after Numba was imported (a Dask worker gets its ``env`` that way: a sweep's workers)
    would then fail at its first compilation, which only happens with an empty or stale kernel cache (a fresh
    install, an upgrade, ``CELLBOX_NB_CACHE=0``).  The pool keeps its size; :func:`limit_threads` lowers the
    threads used with ``numba.set_num_threads``."""
    import numba

    size = str(numba.config.NUMBA_NUM_THREADS)
    if os.environ.get("NUMBA_NUM_THREADS", size).strip() != size:
        os.environ["NUMBA_NUM_THREADS"] = size


def limit_threads(threads):
    """Use at most ``threads`` Numba threads in this thread (Numba can only lower the count) and one BLAS thread
    (through threadpoolctl when it is installed; otherwise the OMP/OPENBLAS/MKL_NUM_THREADS variables cap it)."""
    import numba

    consistent_pool_size()
    if threads:
        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1)
