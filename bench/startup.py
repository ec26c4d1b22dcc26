"""Start-up cost of ``cellbox-nb train --network LI``: wall time from process creation to the first epoch's progress
line, on a first start (empty Numba cache: every kernel is compiled) and on second starts (cache warm), and where a
second start spends that time. Prints JSON lines on stdout (one per measurement, then a summary); progress on stderr.

    python bench/startup.py                  # first start, 5 second starts, breakdown
    python bench/startup.py --repeats 9 --no-first

Measured:

* ``first_start``: NUMBA_CACHE_DIR set to a new empty folder; the run compiles and writes every kernel it needs.
* ``second_start``: the same folder again, ``--repeats`` times (median, min, max).
* ``default_cache``: without NUMBA_CACHE_DIR (the cache next to the package's sources, as a user's shell has it),
  after one warm-up start.
* ``breakdown``: one more second start in an instrumented interpreter: time stamps from process creation for each
  import, the data simulation (its first solve loads the first kernels and initialises Numba's JIT), the first
  write of the results file, and the end of the first epoch, plus the time of every kernel dispatch that had to
  load (from the cache) or compile a signature.

A start that wrote Numba cache files compiled something (``runs_that_compiled``); a source file of cellbox_nb edited
during the run invalidates its kernels' cache entries (``sources_changed_during_run`` in the summary).

The command is ``cellbox-nb train --network LI --epochs 5 --out TMP/fit.h5`` (the epoch count only bounds the run:
the start does not depend on it), run through this interpreter's console script with stderr on a
pseudo-terminal, because the command prints its progress line only to a terminal.
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

import cellbox_nb  # noqa: E402

SOURCES = os.path.dirname(os.path.abspath(cellbox_nb.__file__))

# Runs the train command in-process with time stamps; argv: parent's time.time() at spawn, output path.
_INSTRUMENTED = r"""
import json, sys, time
T0 = float(sys.argv[1])
marks = [("interpreter started", time.time())]
def mark(what):
    marks.append((what, time.time()))
import numpy
mark("import numpy")
import numba
mark("import numba")
import click
mark("import click")
import cellbox_nb
mark("import cellbox_nb (api, core kernels defined, not compiled)")
import cellbox_nb._cli.main as climain
mark("import the cli")
import h5py
mark("import h5py")
import cellbox_nb.data.dataset as dsmod
import cellbox_nb.fit.train as trmod
mark("import the train command's modules (data, fit)")
from numba.core.dispatcher import Dispatcher
kernels = []
_compile = Dispatcher.compile
def compile(self, sig):
    hits = sum(self._cache_hits.values())
    t = time.time()
    res = _compile(self, sig)
    loaded = sum(self._cache_hits.values()) > hits
    kernels.append({"kernel": self.py_func.__module__ + "." + self.py_func.__qualname__, "at_s": t - T0,
                    "s": time.time() - t, "from_cache": loaded})
    return res
Dispatcher.compile = compile
_simulate = dsmod.simulate
def simulate(*a, **k):
    mark("start of the data simulation")
    out = _simulate(*a, **k)
    mark("data simulated (first solve)")
    return out
dsmod.simulate = simulate
_write = trmod.Trainer._write
def write(self, *a, **k):
    first = not any(w == "first results-file write" for w, _ in marks)
    out = _write(self, *a, **k)
    if first:
        mark("first results-file write")
    return out
trmod.Trainer._write = write
_eoe = trmod.Trainer._end_of_epoch
def end_of_epoch(self, *a, **k):
    if self.state.epoch == 1:
        mark("first epoch computed (loss+grad of the first batch, validation solve)")
    return _eoe(self, *a, **k)
trmod.Trainer._end_of_epoch = end_of_epoch
try:
    climain.main(["train", "--network", "LI", "--epochs", "5", "--out", sys.argv[2], "--overwrite", "-q"])
except SystemExit as exc:
    code = exc.code
mark("command finished")
print(json.dumps({"returncode": code, "marks": [(w, t - T0) for w, t in marks], "kernels": kernels}))
"""


def train_args(out):
    return [common.console_script(), "train", "--network", "LI", "--epochs", "5", "--out", out, "--overwrite"]


def newest_mtime(pattern):
    return max((os.path.getmtime(p) for p in glob.glob(pattern, recursive=True)), default=0.0)


def cache_pattern(env):
    folder = env.get("NUMBA_CACHE_DIR") or os.path.join(SOURCES, "**", "__pycache__")
    return os.path.join(folder, "**", "*.nb[ic]")


def start(out, env):
    """One timed start; ``wrote_cache`` is True when it wrote Numba cache files (it compiled something)."""
    before = time.time()
    res = common.run_to_first_epoch(train_args(out), env=env)
    if res["returncode"] != 0 or res["first_epoch_s"] is None:
        raise SystemExit(f"cellbox-nb train failed (exit {res['returncode']}):\n{res['stderr']}")
    res["wrote_cache"] = newest_mtime(cache_pattern(env)) >= before
    return res


def summary(values):
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values), "runs": values}


def breakdown(out, env):
    t0 = time.time()
    res = subprocess.run([sys.executable, "-c", _INSTRUMENTED, repr(t0), out], env=env, capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"instrumented run failed:\n{res.stderr}")
    data = json.loads(res.stdout.strip().splitlines()[-1])
    steps, prev = [], 0.0
    for what, at in data["marks"]:
        steps.append({"step": what, "at_s": round(at, 4), "took_s": round(at - prev, 4)})
        prev = at
    return {"steps": steps, "kernels": data["kernels"]}


def interpreter_start(repeats=5):
    """Median wall time of ``python -c pass`` (the floor of any start)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="second starts to time (default 5)")
    parser.add_argument("--no-first", action="store_true", help="skip the first start (it compiles, ~20-30 s)")
    args = parser.parse_args(argv)
    t_begin = time.time()
    head = {"machine": common.machine(), "versions": common.versions(), "command": " ".join(train_args("TMP/fit.h5")),
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": common.loadavg()}
    lines = []
    with tempfile.TemporaryDirectory(prefix="cellbox_startup_") as tmp:
        out = os.path.join(tmp, "fit.h5")
        cache = os.path.join(tmp, "numba_cache")
        os.mkdir(cache)
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env.pop("CELLBOX_NB_CACHE", None)
        if not args.no_first:
            common.log("[startup] first start, empty NUMBA_CACHE_DIR")
            r = start(out, env)
            n_idx = len(glob.glob(os.path.join(cache, "**", "*.nbi"), recursive=True))
            lines.append({"what": "first_start", "first_epoch_s": r["first_epoch_s"], "total_s": r["total_s"],
                          "index_files_written": n_idx})
        else:
            start(out, env)  # fill the cache
        common.log(f"[startup] {args.repeats} second starts")
        runs = [start(out, env) for _ in range(args.repeats)]
        lines.append({"what": "second_start", **summary([r["first_epoch_s"] for r in runs]),
                      "total_median_s": statistics.median(r["total_s"] for r in runs),
                      "runs_that_compiled": sum(r["wrote_cache"] for r in runs)})
        common.log("[startup] default cache (after one warm-up start)")
        default_env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "CELLBOX_NB_CACHE")}
        start(out, default_env)
        runs = [start(out, default_env) for _ in range(args.repeats)]
        lines.append({"what": "default_cache", **summary([r["first_epoch_s"] for r in runs]),
                      "runs_that_compiled": sum(r["wrote_cache"] for r in runs)})
        common.log("[startup] breakdown of a second start")
        lines.append({"what": "breakdown", **breakdown(out, env)})
    lines.append({"what": "interpreter", "python_c_pass_s": interpreter_start()})
    for line in lines:
        common.emit(line | head)
    by = {line["what"]: line for line in lines}
    changed = sorted(os.path.relpath(p, SOURCES) for p in glob.glob(os.path.join(SOURCES, "**", "*.py"),
                                                                     recursive=True) if os.path.getmtime(p) >= t_begin)
    common.emit({"what": "summary", "sources_changed_during_run": changed, "first_start_s": by.get("first_start", {}).get("first_epoch_s"),
                 "second_start_median_s": by["second_start"]["median_s"],
                 "default_cache_median_s": by["default_cache"]["median_s"],
                 "target_second_start_under_2s": by["second_start"]["median_s"] < 2.0,
                 "loadavg_end": common.loadavg()} | head)


if __name__ == "__main__":
    main()
