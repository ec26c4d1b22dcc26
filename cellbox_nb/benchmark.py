"""Benchmark problems and timings of the public API: what ``cellbox-nb bench`` runs, and what the scripts in
``bench/`` (bench_solve.py, bench_grad.py, through bench/problems.py and bench/common.py) build on.

Problems (docs: bench/README.md). The family is the one the peer timings in the engineering notes were measured
on; everything is drawn from ``numpy.random.default_rng([seed, n, M, T])``, so a size's problem depends only on
the seed and the size, not on which other sizes are run:

* W: sparse random, each node receives 3 in-edges (distinct source nodes other than itself, fewer when n < 4)
  with N(0, 1) weights, then scaled so its spectral radius is 0.9 (above ``EIG_MAX_N`` nodes, where the
  eigenvalues would cost O(n^3), so that every row's absolute sum is 0.9, which bounds the spectral radius);
* alpha ~ U[0.5, 1.5]; the decay d is 1 (the API default);
* U: each condition perturbs 1 or 2 nodes (equally likely) at levels drawn from U(0, 1];
* t_k = 20 k / T, k = 1..T;
* data Y = solve(0.9 W, alpha, U, t) + N(0, 0.01^2) noise, so the model with the true W does not fit the data
  exactly and the loss gradient is nonzero.

The standard grid (n, M, T) is ``GRID``; tolerances rtol 1e-6, atol 1e-8.
"""

import glob
import math
import os
import platform
import time

import numpy as np

from .errors import ConfigError

TFINAL = 20.0
RHO = 0.9
IN_EDGES = 3
DATA_W_SCALE = 0.9
NOISE = 0.01
EIG_MAX_N = 2000
RTOL = 1e-6
ATOL = 1e-8

GRID = [(7, 30, 5), (19, 120, 5), (99, 89, 5), (300, 100, 5), (1000, 50, 5)]


# -- problems ---------------------------------------------------------------------------------------------------
def make_model(n, M, T, seed=0):
    """Return (W (n, n), alpha (n,), U (M, n), t (T,)) and the generator, ready to draw the data noise."""
    rng = np.random.default_rng([seed, n, M, T])
    W = np.zeros((n, n))
    k = min(IN_EDGES, n - 1)
    for i in range(n):
        if k > 0:
            src = rng.choice(np.delete(np.arange(n), i), size=k, replace=False)
            W[i, src] = rng.normal(size=k)
    if n > EIG_MAX_N:
        W *= RHO / np.maximum(np.abs(W).sum(axis=1, keepdims=True), 1e-300)
    else:
        rho = float(np.max(np.abs(np.linalg.eigvals(W)))) if n > 1 else 0.0
        if rho > 0.0:
            W *= RHO / rho
    alpha = rng.uniform(0.5, 1.5, n)
    U = np.zeros((M, n))
    for c in range(M):
        m = min(int(rng.integers(1, 3)), n)
        U[c, rng.choice(n, size=m, replace=False)] = 1.0 - rng.random(m)  # U(0, 1]
    t = TFINAL * np.arange(1, T + 1) / T
    return W, alpha, U, t, rng


def add_data(W, alpha, U, t, rng, rtol=RTOL, atol=ATOL):
    """The data Y (M, T, n) of a model from :func:`make_model`: the CPU solve with 0.9 W, plus noise from ``rng``."""
    from .api import solve

    Y = solve(DATA_W_SCALE * W, alpha, U, t, rtol=rtol, atol=atol)
    return Y + NOISE * rng.normal(size=Y.shape)


def make_problem(n, M, T, seed=0, rtol=RTOL, atol=ATOL):
    """The full problem as a dict with W, alpha, U, t and the data Y (M, T, n).

    Y is solved on the CPU at the given tolerances (so the solver is compiled or loaded from the cache here).
    """
    W, alpha, U, t, rng = make_model(n, M, T, seed)
    return {"W": W, "alpha": alpha, "U": U, "t": t, "Y": add_data(W, alpha, U, t, rng, rtol, atol)}


def parse_sizes(text, grid=GRID):
    """``"7,19"`` -> the grid entries (n, M, T) whose n is listed, in the order given; a token ``n:M:T`` gives
    a size outside the grid. Raises ConfigError naming the bad token."""
    by_n = {g[0]: g for g in grid}
    out = []
    for tok in str(text).split(","):
        tok = tok.strip()
        if not tok:
            continue
        parts = tok.split(":")
        if len(parts) == 3 and all(p.strip().isdigit() and int(p) > 0 for p in parts):
            out.append(tuple(int(p) for p in parts))
        elif len(parts) == 1 and tok.isdigit() and int(tok) in by_n:
            out.append(by_n[int(tok)])
        else:
            raise ConfigError(f"--sizes: {tok!r} is neither an n of the grid ({', '.join(str(g[0]) for g in grid)}) "
                              f"nor a triple n:M:T of positive integers")
    if not out:
        raise ConfigError("--sizes: no size given")
    return out


# -- the machine ------------------------------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    """Processor, kernel, CPU count and Python version of this machine."""
    u = platform.uname()
    return {"processor": platform.processor() or cpu_model(), "cpu_model": cpu_model(),
            "uname": f"{u.system} {u.release} {u.machine}", "hostname": u.node, "cpu_count": os.cpu_count(),
            "python": platform.python_version()}


def versions():
    import numba

    from . import __version__

    return {"numpy": np.__version__, "numba": numba.__version__, "cellbox_nb": __version__,
            "python": platform.python_version()}


def threads():
    import numba

    return int(numba.get_num_threads())


def threading_layer():
    """Numba's threading layer (known once a parallel kernel has run), or None."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return None


def set_threads(n):
    """numba.set_num_threads(n) after checking it (ConfigError: out of 1..NUMBA_NUM_THREADS); None: no change."""
    if n is None:
        return
    import numba

    top = int(numba.config.NUMBA_NUM_THREADS)
    if not 1 <= n <= top:
        raise ConfigError(f"--threads: must be between 1 and {top} (NUMBA_NUM_THREADS), got {n}")
    numba.set_num_threads(n)


def cuda_device():
    """Name of the current CUDA device, or None."""
    try:
        from numba import cuda

        name = cuda.get_current_device().name
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return None


def loadavg():
    """1-minute load average (other processes on a shared machine slow the timings down), or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def numba_cache_dir():
    """Where the Numba cache of cellbox_nb's kernels is: NUMBA_CACHE_DIR, else the __pycache__ folders."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    return env or os.path.join(os.path.dirname(os.path.abspath(__file__)), "**", "__pycache__")


def cache_index_files():
    """Number of Numba index files (*.nbi) of cellbox_nb in the cache a fresh process would use."""
    return len(glob.glob(os.path.join(numba_cache_dir(), "**", "*.nbi"), recursive=True))


def kernel_counts():
    """(compiled, loaded): signatures compiled and loaded from the Numba cache so far in this process, summed over
    the kernels that are module attributes of cellbox_nb's loaded modules."""
    import sys

    from numba.core.dispatcher import Dispatcher

    seen, compiled, loaded = set(), 0, 0
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == "cellbox_nb" or name.startswith("cellbox_nb.")):
            continue
        for obj in list(vars(mod).values()):
            if isinstance(obj, Dispatcher) and id(obj) not in seen:
                seen.add(id(obj))
                stats = obj.stats
                compiled += sum(stats.cache_misses.values())
                loaded += sum(stats.cache_hits.values())
    return compiled, loaded


# -- timing -----------------------------------------------------------------------------------------------------
def timed(fn):
    """(wall seconds, result) of ``fn()``."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def choose_repeats(one_s, budget_s=1.5, minimum=3, maximum=1000):
    """Enough repeats for about budget_s seconds of timed calls, at least ``minimum``."""
    if one_s <= 0:
        return maximum
    return int(min(maximum, max(minimum, math.ceil(budget_s / one_s))))


def bench_size(n, M, T, *, backend="cpu", precision="float64", rtol=RTOL, atol=ATOL, seed=0, repeats=None,
               time_budget=2.0, log=None, adjoint="interpolating", adjoint_integrator="auto"):
    """Time ``solve`` and ``loss_and_grad`` (MAE) on the problem of one size; return one flat record.

    Order: the model; the first ``solve`` in this process at this size (``solve_first_s``; at the first size it
    includes loading or compiling the kernels, counted in ``kernels_compiled``/``kernels_loaded``); the data Y
    (always solved on the CPU, so every backend sees the same problem); the first ``loss_and_grad``
    (``grad_first_s``); then ``repeats`` interleaved pairs solve / loss_and_grad (``repeats`` None: enough pairs
    for ``time_budget`` seconds, at least 3). ``solve_s``/``grad_s`` are the medians; step counts are means over
    the conditions of the solver's stats.  ``adjoint``, ``adjoint_integrator``: loss_and_grad's.
    """
    from .api import loss_and_grad, solve

    say = log or (lambda msg: None)
    load_start = loadavg()
    say(f"[bench] n={n} M={M} T={T}: problem")
    t0 = time.perf_counter()
    W, alpha, U, t, rng = make_model(n, M, T, seed)
    problem_s = time.perf_counter() - t0
    opts = {"rtol": rtol, "atol": atol, "backend": backend, "precision": precision, "full_output": True}

    def fwd():
        return solve(W, alpha, U, t, **opts)

    c0 = kernel_counts()
    solve_first_s, (_, finfo) = timed(fwd)
    t0 = time.perf_counter()
    Y = add_data(W, alpha, U, t, rng, rtol, atol)
    problem_s += time.perf_counter() - t0

    def grad():
        return loss_and_grad(W, alpha, U, t, Y, loss="mae", adjoint=adjoint, adjoint_integrator=adjoint_integrator,
                             **opts)

    grad_first_s, (loss, grads, ginfo) = timed(grad)
    c1 = kernel_counts()
    tf, tg = [], []
    target = repeats
    while target is None or len(tf) < target:
        tf.append(timed(fwd)[0])
        tg.append(timed(grad)[0])
        if target is None:
            target = choose_repeats(tf[0] + tg[0], budget_s=time_budget)
            say(f"[bench] n={n}: {target} repeats of ~{tf[0]:.3g} s (solve) + ~{tg[0]:.3g} s (loss+grad)")
    fs, gs = finfo["stats"], ginfo["stats"]
    solve_s, grad_s = float(np.median(tf)), float(np.median(tg))
    return {
        "kind": "size", "n": n, "M": M, "T": T, "backend": backend, "precision": precision, "adjoint": adjoint,
        "adjoint_integrator": adjoint_integrator, "rtol": rtol,
        "atol": atol, "seed": seed, "loss_kind": "mae", "threads": threads(), "threading_layer": threading_layer(),
        "repeats": len(tf), "problem_s": problem_s,
        "solve_first_s": solve_first_s, "grad_first_s": grad_first_s,
        "kernels_compiled": c1[0] - c0[0], "kernels_loaded": c1[1] - c0[1],
        "solve_s": solve_s, "solve_min_s": float(np.min(tf)), "solve_max_s": float(np.max(tf)),
        "grad_s": grad_s, "grad_min_s": float(np.min(tg)), "grad_max_s": float(np.max(tg)),
        "ratio": grad_s / solve_s,
        "steps_per_cond": float(fs[:, 0].mean()), "rejected_per_cond": float(fs[:, 1].mean()),
        "fev_per_cond": float(fs[:, 2].mean()),
        "bwd_steps_per_cond": float(gs[:, 3].mean()), "bwd_rejected_per_cond": float(gs[:, 4].mean()),
        "bwd_fev_per_cond": float(gs[:, 5].mean()),
        "loss": float(loss), "grad_W_norm": float(np.linalg.norm(grads["W"])),
        "loadavg_start": load_start, "loadavg_end": loadavg(),
    }
