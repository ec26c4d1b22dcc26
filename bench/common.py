"""Helpers shared by bench_solve.py and bench_grad.py: environment description, first-call subprocesses, timing."""

import glob
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

# Run in a fresh interpreter: load the problem, import cellbox_nb, time its first call. Prints one JSON line.
_FIRST_CALL = r"""
import json, sys, time
import numpy as np
path, kind, rtol, atol = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
p = dict(np.load(path))
t0 = time.perf_counter()
import cellbox_nb
t1 = time.perf_counter()
if kind == "solve":
    cellbox_nb.solve(p["W"], p["alpha"], p["U"], p["t"], rtol=rtol, atol=atol)
else:
    cellbox_nb.loss_and_grad(p["W"], p["alpha"], p["U"], p["t"], p["Y"], loss="mae", rtol=rtol, atol=atol)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t2 - t1}))
"""


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
    u = platform.uname()
    return {"processor": platform.processor() or cpu_model(), "cpu_model": cpu_model(),
            "uname": f"{u.system} {u.release} {u.machine}", "cpu_count": os.cpu_count(),
            "python": platform.python_version()}


def versions():
    import numba

    import cellbox_nb

    return {"numpy": np.__version__, "numba": numba.__version__, "cellbox_nb": cellbox_nb.__version__,
            "python": platform.python_version()}


def threads():
    import numba

    return int(numba.get_num_threads())


def cache_files():
    """Number of Numba index files (*.nbi) for cellbox_nb in the cache the default first call will use."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        pattern = os.path.join(env, "**", "*.nbi")
    else:
        import cellbox_nb

        pattern = os.path.join(os.path.dirname(cellbox_nb.__file__), "**", "__pycache__", "*.nbi")
    return len(glob.glob(pattern, recursive=True))


def first_calls(problem, kind, rtol, atol):
    """First call of ``kind`` ("solve" or "grad") in fresh interpreters.

    Returns a dict: first_call_s (default Numba cache, as a user's second start sees it), cache_files and
    cache_empty (the state of that cache before the call), first_call_fresh_s (NUMBA_CACHE_DIR pointing to a new
    empty directory, so everything is compiled), import_s (import cellbox_nb in the fresh-cache run).
    """
    with tempfile.TemporaryDirectory(prefix="cellbox_bench_") as tmp:
        path = os.path.join(tmp, "problem.npz")
        np.savez(path, **problem)
        args = [sys.executable, "-c", _FIRST_CALL, path, kind, repr(rtol), repr(atol)]

        n_cache = cache_files()
        default = _run(args, dict(os.environ))
        fresh_dir = os.path.join(tmp, "numba_cache")
        os.mkdir(fresh_dir)
        fresh = _run(args, dict(os.environ, NUMBA_CACHE_DIR=fresh_dir))
    return {"first_call_s": default["first_call_s"], "cache_files": n_cache, "cache_empty": n_cache == 0,
            "first_call_fresh_s": fresh["first_call_s"], "import_s": fresh["import_s"]}


def _run(args, env):
    res = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"first-call subprocess failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def choose_repeats(one_s, budget_s=1.5, minimum=3, maximum=1000):
    """Enough repeats for about budget_s seconds of timed calls, at least ``minimum``."""
    if one_s <= 0:
        return maximum
    return int(min(maximum, max(minimum, math.ceil(budget_s / one_s))))


def apply_threads(n):
    """Set the Numba thread count for this process and the first-call subprocesses (None: leave the default)."""
    if n is None:
        return
    import numba

    numba.set_num_threads(n)
    os.environ["NUMBA_NUM_THREADS"] = str(n)


def loadavg():
    """1-minute load average (other processes on a shared machine slow the timings down), or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(record):
    print(json.dumps(record), flush=True)


def add_common_args(parser):
    parser.add_argument("--sizes", default=None,
                        help="comma-separated n values from the grid (7,19,99,300,1000); default: all "
                             "(with --quick: 7,19,99)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per size (default: enough for about 1.5 s, at least 3)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sizes 7,19,99 unless --sizes is given, 3 repeats unless --repeats is "
                             "given, and no first-call subprocesses (compile_s and first_call_s are null)")
    parser.add_argument("--no-first-call", action="store_true",
                        help="skip the first-call subprocesses (compile_s and first_call_s are null)")
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--atol", type=float, default=1e-8)
    parser.add_argument("--seed", type=int, default=0, help="problem seed (bench/problems.py)")
    parser.add_argument("--threads", type=int, default=None,
                        help="numba.set_num_threads(N) in this process and NUMBA_NUM_THREADS=N in the first-call "
                             "subprocesses (default: Numba's default, one per core)")
    return parser
