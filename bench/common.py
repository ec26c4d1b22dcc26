"""Helpers shared by the bench scripts: environment description, first-call subprocesses, timing, and timing a
``cellbox-nb`` command up to its first epoch (train_throughput.py, startup.py)."""

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

# machine and version description, timing: shared with `cellbox-nb bench`
from cellbox_nb.benchmark import (cache_index_files, choose_repeats, cpu_model, loadavg, machine,  # noqa: F401
                                  threads, timed, versions)

cache_files = cache_index_files  # Numba index files (*.nbi) of cellbox_nb in the cache a fresh process would use

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
        default = _run(args, dict(os.environ, **SUBPROCESS_ENV))
        fresh_dir = os.path.join(tmp, "numba_cache")
        os.mkdir(fresh_dir)
        fresh = _run(args, dict(os.environ, **SUBPROCESS_ENV, NUMBA_CACHE_DIR=fresh_dir))
    return {"first_call_s": default["first_call_s"], "cache_files": n_cache, "cache_empty": n_cache == 0,
            "first_call_fresh_s": fresh["first_call_s"], "import_s": fresh["import_s"]}


def _run(args, env):
    res = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"first-call subprocess failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def console_script():
    """The ``cellbox-nb`` console script of this interpreter (not a version manager's shim), else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "cellbox-nb")
    return here if os.access(here, os.X_OK) else shutil.which("cellbox-nb")


def run_to_first_epoch(args, env=None, marker=b"epoch 1/"):
    """Run a ``cellbox-nb train`` command with its stderr on a pseudo-terminal (so it prints its progress line)
    and time it from just before the process is created.

    Returns a dict: first_epoch_s (wall seconds until ``marker``, the first epoch's progress line, appeared;
    None if it never did), total_s (until the process ended), returncode, stdout, stderr (the terminal's text).
    """
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks, first = [], None
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            chunks.append(chunk)
            if first is None and marker in b"".join(chunks[-2:]):
                first = time.perf_counter() - t0
        elif proc.poll() is not None:
            break
    out = proc.stdout.read()
    proc.wait()
    total = time.perf_counter() - t0
    os.close(master)
    proc.stdout.close()
    return {"first_epoch_s": first, "total_s": total, "returncode": proc.returncode,
            "stdout": out.decode(errors="replace"), "stderr": b"".join(chunks).decode(errors="replace")}


# environment of the first-call subprocesses on top of this process's (apply_threads); this process's own
# NUMBA_NUM_THREADS stays as Numba read it, since Numba rereads it at every compilation and raises if it changed
# after its thread pool started (a cold kernel cache would then fail the first compilation)
SUBPROCESS_ENV = {}


def apply_threads(n):
    """Set the Numba thread count for this process and the first-call subprocesses (None: leave the default)."""
    if n is None:
        return
    import numba

    numba.set_num_threads(n)
    SUBPROCESS_ENV["NUMBA_NUM_THREADS"] = str(n)


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
