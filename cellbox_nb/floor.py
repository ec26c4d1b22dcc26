"""This machine's floor rates, to set beside the solver's work counts (right-hand-side evaluations per condition):
float64 matrix products, tanh throughput and memory bandwidth (``bench/floor.py``, ``cellbox-nb bench --floor``).

* ``gemm``: numpy ``A @ B`` with A (n, n) and B (n, M), the product a lockstep solve of M conditions makes per
  stage, at each size of the benchmark grid, and one large square product; GFLOP/s = 2 n^2 M / time. numpy's
  BLAS uses its own threads (all cores unless OPENBLAS_NUM_THREADS or similar say otherwise).
* ``matvec``: one thread running the CPU kernels' primitive, z = W x for each of M conditions in turn (a Numba
  loop over W's transpose, summing columns, as core/rhs.py does); GFLOP/s = 2 n^2 M / time.
* ``tanh``: nanoseconds per element of ``np.tanh`` on a large array, of a one-thread Numba loop calling
  ``math.tanh`` (libm), and of the same loop calling the engine's own ``core.tanh`` when it exists.
* ``copy``: ``np.copyto`` between two large arrays; GB/s counts the bytes read plus the bytes written.

* ``per_rhs``: per grid size, the floor of one right-hand-side evaluation for one condition in nanoseconds: the
  2 n^2 flops of W x at the GEMM rate (all conditions in one product) or at the one-thread matvec rate, and n
  tanh evaluations (core.tanh where it exists, else libm), to multiply by the solver's RHS counts.

Each figure is the median of repeats after one warm-up call, with enough repeats for about ``budget_s`` seconds
(at least 3).
"""

import math
import time

import numpy as np

from ._jit import kernel


@kernel
def _matvecs(WT, X, Z):
    """Z[c] = W X[c] for every row c of X, W given as its transpose WT (n, n)."""
    n = WT.shape[0]
    for c in range(X.shape[0]):
        for i in range(n):
            Z[c, i] = 0.0
        for j in range(n):
            xj = X[c, j]
            for i in range(n):
                Z[c, i] += WT[j, i] * xj


@kernel
def _tanh_libm(x, y):
    for i in range(x.shape[0]):
        y[i] = math.tanh(x[i])


try:  # the engine's vectorisable tanh, where this version has one
    from .core.tanh import tanh as _core_tanh
except ImportError:  # pragma: no cover - older engine
    _core_tanh = None
else:
    @kernel
    def _tanh_core(x, y):
        for i in range(x.shape[0]):
            y[i] = _core_tanh(x[i])


def _median_time(fn, budget_s, minimum=3, maximum=1000):
    fn()  # warm-up (and compile)
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < minimum or (time.perf_counter() < t_end and len(times) < maximum):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times)


def _rates(shapes, budget_s, seed, setup):
    """[{n, M, seconds, gflops, repeats}]: for each (n, M), ``setup(rng, n, M)`` gives the call that does 2 n^2 M
    flops."""
    rng = np.random.default_rng(seed)
    out = []
    for n, M in shapes:
        s, reps = _median_time(setup(rng, n, M), budget_s)
        out.append({"n": n, "M": M, "seconds": s, "gflops": 2.0 * n * n * M / s / 1e9, "repeats": reps})
    return out


def gemm(shapes, budget_s=0.5, seed=0):
    """[{n, M, seconds, gflops, repeats}] for numpy A (n, n) @ B (n, M), one entry per (n, M) in ``shapes``."""
    def setup(rng, n, M):
        A, B, C = rng.standard_normal((n, n)), rng.standard_normal((n, M)), np.empty((n, M))
        return lambda: np.matmul(A, B, out=C)

    return _rates(shapes, budget_s, seed, setup)


def matvec(shapes, budget_s=0.5, seed=0):
    """[{n, M, seconds, gflops, repeats}] for one thread computing W x for M vectors x, per (n, M)."""
    def setup(rng, n, M):
        WT, X, Z = rng.standard_normal((n, n)), rng.standard_normal((M, n)), np.empty((M, n))
        return lambda: _matvecs(WT, X, Z)

    return _rates(shapes, budget_s, seed, setup)


def tanh_rate(size=1 << 22, budget_s=0.5, seed=0):
    """Nanoseconds per element: {"numpy_ns", "numba_libm_ns", "core_ns" (None without core.tanh), "size"}."""
    x = np.random.default_rng(seed).uniform(-3.0, 3.0, size)
    y = np.empty_like(x)
    res = {"size": size}
    res["numpy_ns"] = _median_time(lambda: np.tanh(x, out=y), budget_s)[0] / size * 1e9
    res["numba_libm_ns"] = _median_time(lambda: _tanh_libm(x, y), budget_s)[0] / size * 1e9
    res["core_ns"] = None if _core_tanh is None else _median_time(lambda: _tanh_core(x, y), budget_s)[0] / size * 1e9
    return res


def copy_bandwidth(size_mb=512, budget_s=0.5):
    """{"size_mb", "seconds", "gbps"}: np.copyto of a ``size_mb`` MiB array; GB/s = 2 * bytes / time."""
    n = size_mb * (1 << 20) // 8
    src = np.ones(n)
    dst = np.empty(n)
    s, reps = _median_time(lambda: np.copyto(dst, src), budget_s)
    return {"size_mb": size_mb, "seconds": s, "gbps": 2.0 * n * 8 / s / 1e9, "repeats": reps}


def measure(grid=None, square=2000, tanh_size=1 << 22, copy_mb=512, budget_s=0.5):
    """All floor figures as one flat-ish dict: gemm per grid size (n, M) and for an n = ``square`` square product,
    one-thread matvecs per grid size, tanh, copy."""
    from .benchmark import GRID

    shapes = [(n, M) for n, M, _ in (grid or GRID)]
    g = gemm(shapes + [(square, square)], budget_s)
    mv = matvec(shapes, budget_s)
    th = tanh_rate(tanh_size, budget_s)
    tanh_ns = th["core_ns"] if th["core_ns"] is not None else th["numba_libm_ns"]
    per_rhs = [{"n": a["n"], "M": a["M"], "gemm_ns": 2.0 * a["n"] ** 2 / a["gflops"],
                "matvec_1thread_ns": 2.0 * b["n"] ** 2 / b["gflops"], "tanh_ns": a["n"] * tanh_ns}
               for a, b in zip(g[:-1], mv)]
    return {"kind": "floor", "gemm": g[:-1], "gemm_square": g[-1], "matvec_1thread": mv, "tanh": th,
            "copy": copy_bandwidth(copy_mb, budget_s), "per_rhs": per_rhs}
