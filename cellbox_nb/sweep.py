"""Sweeps: many independent fits from one spec, on Dask distributed or one row at a time (job arrays).

Spec (a YAML, JSON or TOML file holding a mapping; DESIGN.md section 6)::

    base:                      # training config keys every fit shares (optional)
      network: LI
      epochs: 500
    grid:                      # cartesian product of value lists, the last key varying fastest (optional)
      seed: [0, 1, 2]
      lr: [0.01, 0.02]
    fits:                      # an explicit list of fits (optional), each crossed with the grid
      - {network: LI}
      - {network: GSD, conditions: 100}

Rows are ``base | fit | grid point`` in the order fits x grid (without ``fits``, the grid alone; without
``grid``, the list alone; at least one of the two).  A row holds flat training config keys
(:data:`cellbox_nb.fit.config.SCHEMA`) plus an optional ``data`` key (a source for
:func:`cellbox_nb.data.load.load_data`: built-in name, CellBox folder or HDF5 dataset; default: simulate the row's
``network`` as ``cellbox-nb train`` does).  Every row is resolved and checked (config, data, split) before anything
is written.

Row ``i`` writes one results file ``fit-IIII-HHHHHHHHHH.h5`` (the index and a hash of the resolved config and data
source; keys in ``fit.config.LATE_KEYS`` are left out while at their default, so adding a key renames no row) in
the output folder.  A row is *done* when that file is complete with a final status (``finished``,
``early_stopped`` or ``numerical_failure``: the file's own completion marker, read by
:func:`cellbox_nb.fit.store.read_fit`); a rerun skips done rows and resumes the others from their last checkpoint,
so killing a sweep and running it again redoes only unfinished work and ends with the same bits (a row with a data
file checks that the file still holds the data its fit was made on; a relative data path is made absolute where
the spec is expanded, so workers started in another folder read the same file).  A numerical
failure is a result, not retried (it would give the same bits again); a row that raised (lost worker, unreadable
data, internal error) is ``failed`` and runs again up to ``retries`` times.  ``summary.json`` and ``summary.csv``
list every row with its status, what varies between rows, and its metrics.

Threads: a fit uses ``threads`` Numba threads and one BLAS thread, and a LocalCluster gets at most
``cores // threads`` single-threaded worker processes, so workers x Numba threads x BLAS threads never exceeds
the cores given: ``SLURM_CPUS_PER_TASK`` when set, else the CPU affinity mask (:func:`cores_available`).
"""

import csv
import difflib
import hashlib
import io
import itertools
import json
import os
import signal
import threading
import time
import warnings

from .data.dataset import data_digest
from .data.h5atomic import is_being_written, write_bytes_atomically
from .errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, CellboxError, ConfigError, InputDataError, Interrupted,
                     NumericalError, OutputInUse, describe)
from .fit.config import DEFAULTS, LATE_KEYS, config_differences, load_config_file, resolve
from .fit.store import read_fit
from .fit.threads import cores_available, limit_threads

SPEC_KEYS = ("base", "grid", "fits")
DONE = ("finished", "early_stopped", "numerical_failure")  # final statuses: a complete, final results file
OK = ("finished", "early_stopped")
METRICS = ("mae_train", "mae_val", "mae_test", "pearson_test", "pearson_W", "pearson_W_offdiag", "pearson_alpha",
           "auroc", "aupr", "sign_accuracy", "epochs", "best_epoch", "wall_s")
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"


# -- spec -> rows ----------------------------------------------------------------------------------------------
def load_spec(path):
    """Read a sweep spec and return its rows (dicts: index, id, file, config, data, vars); ConfigError if bad."""
    raw = load_config_file(path)
    return expand(raw, where=f"sweep spec {path}")


def expand(spec, where="sweep spec"):
    """Rows of a spec mapping (see the module docstring), each resolved and checked; ConfigError names the row."""

    def fail(message):
        raise ConfigError(f"{where}: {message}")

    if not isinstance(spec, dict):
        fail("must hold a mapping with keys base, grid and/or fits")
    for key in spec:
        if key not in SPEC_KEYS:
            match = difflib.get_close_matches(str(key), SPEC_KEYS, n=1, cutoff=0.5)
            hint = f" (did you mean '{match[0]}'?)" if match else f" (valid: {', '.join(SPEC_KEYS)})"
            fail(f"unknown top-level key '{key}'{hint}")
    base = spec.get("base") or {}
    if not isinstance(base, dict):
        fail("'base' must be a mapping of config keys to values")
    if "grid" not in spec and "fits" not in spec:
        fail("defines no fits: give 'grid' (lists of values) and/or 'fits' (a list of configs)")
    grid = spec.get("grid", {})
    if not isinstance(grid, dict) or ("grid" in spec and not grid):
        fail("'grid' must be a non-empty mapping of config keys to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            fail(f"grid key '{key}' must have a non-empty list of values, got {values!r}")
    fits = spec.get("fits", [{}])
    if not isinstance(fits, list) or not fits:
        fail("'fits' must be a non-empty list of mappings")
    for j, fit in enumerate(fits):
        if not isinstance(fit, dict):
            fail(f"fits[{j}] must be a mapping of config keys to values, got {fit!r}")
    rows = []
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    for j, fit in enumerate(fits):
        for point in points:
            layer = {**base, **fit, **point}
            data = layer.pop("data", None)
            where_from = ([f"fits[{j}]"] if "fits" in spec else []) + \
                ([f"grid {json.dumps(point, default=str)}"] if point else [])
            label = f"row {len(rows)} ({', '.join(where_from)})"
            if data is not None and not isinstance(data, str):
                fail(f"{label}: 'data' must be a dataset name or path, got {data!r}")
            try:
                cfg = resolve(layer)
            except ConfigError as exc:
                fail(f"{label}: {exc}")
            rows.append(_row(len(rows), cfg, data))
    _mark_varying(rows)
    return rows


def _row(index, cfg, data):
    hashed = {k: v for k, v in cfg.items() if not (k in LATE_KEYS and v == DEFAULTS[k])}
    key = json.dumps({"config": hashed, "data": data}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return {"index": index, "id": f"{index:04d}-{digest}", "file": f"fit-{index:04d}-{digest}.h5",
            "config": cfg, "data": data, "source": _source(data)}


def _source(data):
    """Where a row's data are read from: a path as given made absolute here, where the spec is read, so a worker
    of a cluster started in another folder reads the same file (a built-in name stays a name).  The row's file
    name hashes the path as given."""
    from .data.load import BUILTIN_DATASETS

    if data is None or data in BUILTIN_DATASETS or not os.path.exists(data):
        return data
    return os.path.abspath(data)


def _mark_varying(rows):
    """Set each row's ``vars``: the data source and config keys whose value differs between rows."""
    keys = ["data"] if len({r["data"] for r in rows}) > 1 else []
    keys += [k for k in rows[0]["config"]
             if len({json.dumps(r["config"][k]) for r in rows}) > 1]
    for r in rows:
        r["vars"] = {k: (r["data"] if k == "data" else r["config"][k]) for k in keys}


def dataset_for(cfg, data=None):
    """The dataset a row trains on: ``data`` through load_data, else the config's simulated benchmark."""
    if data is not None:
        from .data.load import load_data

        return load_data(data, t_end=cfg["tfinal"])
    from .data.dataset import simulate

    return simulate(cfg["network"], conditions=cfg["conditions"], times=cfg["times"], tfinal=cfg["tfinal"],
                    noise=cfg["noise"], max_targets=cfg["max_targets"], seed=cfg["data_seed"])


def check_rows(rows, where="sweep spec", check_backend=True):
    """Load every row's data once and check what a fit checks before it writes (node roles, W mask, split).

    Raises ConfigError / InputDataError naming the row; returns the warnings of the data readers (strings).
    """
    from .fit.masks import apply_node_roles, build_w_mask
    from .fit.splits import make_split

    data_keys = ("tfinal",) + ("network", "conditions", "times", "noise", "max_targets", "data_seed")
    split_keys = ("partition", "drug", "n_val", "n_test", "val_frac", "test_frac", "split_seed", "cellbox_masks",
                  "no_self_loops", "n_protein_nodes", "n_phenotype_nodes")
    from .api import _backend

    seen, messages, loaded = set(), [], {}
    first = {}
    for row in rows:  # the same fit twice gives the same bits twice
        same = first.setdefault(row["id"].split("-", 1)[1], row["index"])
        if same != row["index"]:
            messages.append(f"row {row['index']} is the same fit as row {same} (same config and data)")
    for row in rows:
        cfg, data = row["config"], row["source"]
        try:  # a cuda row without a usable GPU (not where the fits run on another cluster's workers)
            if check_backend:
                _backend(cfg["backend"])
        except CellboxError as exc:
            raise type(exc)(f"{where}: row {row['index']}: {exc}") from None
        source = json.dumps([data, cfg["tfinal"]] if data is not None else [cfg[k] for k in data_keys])
        key = (source, json.dumps([cfg[k] for k in split_keys]))
        if key in seen:
            continue
        seen.add(key)
        try:
            if source not in loaded:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    ds = dataset_for(cfg, data)
                messages += [f"data {data}: {w.message}" for w in caught]
                if data is not None:  # keep read data for the next rows; simulated data is cheap to redo
                    loaded[source] = ds
            else:
                ds = loaded[source]
            ds = apply_node_roles(cfg, ds)
            build_w_mask(cfg, ds)
            make_split(ds, cfg)
        except CellboxError as exc:
            raise type(exc)(f"{where}: row {row['index']}: {exc}") from None
    return messages


# -- threads ---------------------------------------------------------------------------------------------------
def thread_budget(workers=None, threads=None, cores=None, fits=None):
    """``(workers, threads)`` with workers x threads x 1 BLAS thread <= cores (ConfigError if asked for more);
    by default as many workers as fit in the cores, at most ``fits`` (one worker per fit is enough)."""
    cores = cores_available() if cores is None else cores
    threads = 1 if threads is None else threads
    if threads > cores:
        raise ConfigError(f"--threads {threads} exceeds the {cores} core(s) available (SLURM_CPUS_PER_TASK or the "
                          f"CPU affinity mask)")
    workers = max(1, min(cores // threads, fits or cores)) if workers is None else workers
    if workers * threads > cores:
        raise ConfigError(f"--workers {workers} x --threads {threads} = {workers * threads} threads exceed the "
                          f"{cores} core(s) available (SLURM_CPUS_PER_TASK or the CPU affinity mask)")
    return workers, threads


def make_out_folder(out_dir):
    """Create the output folder if needed and check that files can be written in it (the temporary a results
    file is written under), before any fit starts: an OSError naming the folder otherwise (exit code 2)."""
    from .data.h5atomic import temp_beside

    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), out_dir) from None
    try:
        os.remove(temp_beside(os.path.join(out_dir, SUMMARY_JSON)))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), out_dir) from None


def worker_env(threads):
    """Environment of a worker process: ``threads`` Numba threads, one BLAS/OpenMP thread."""
    one = "1"
    return {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": one, "OPENBLAS_NUM_THREADS": one,
            "MKL_NUM_THREADS": one}


# -- one row ---------------------------------------------------------------------------------------------------
def _existing(path):
    """The results file at ``path`` (read_fit dict), or None when missing or unreadable."""
    return _read_existing(path)[0]


def _read_existing(path):
    """``(fit, problem)``: the results file at ``path`` (read_fit dict) or None, and why it could not be read
    (None when it is missing or was read)."""
    if not os.path.exists(path):
        return None, None
    try:
        return read_fit(path), None
    except CellboxError as exc:
        return None, " ".join(str(exc).split())


def is_done(fit):
    """A row's fit needs no more work (with prune: the refits too; files of earlier versions said finished
    before them)."""
    return (fit is not None and fit["status"] in DONE and fit["metrics"] is not None
            and not (fit["config"].get("prune") and fit["prune"] is None))


def _row_summary(row, fit=None, *, status=None, action, message="", exit_code=0, numba_threads=None):
    out = {"index": row["index"], "id": row["id"], "file": row["file"]}
    metrics = (fit or {}).get("metrics") or {}
    status = status or (fit["status"] if fit is not None else "pending")
    if not exit_code and status not in OK:  # what `cellbox-nb train` would have exited with
        exit_code = NumericalError.exit_code if status == "numerical_failure" else EXIT_INTERRUPTED
    if numba_threads is None and fit is not None:  # a fit not run now: the threads of the process that wrote it
        numba_threads = fit.get("numba_threads")
    out.update({"status": status, "action": action, "attempts": 1, "message": message, "exit_code": exit_code,
                "numba_threads": numba_threads})
    varied = row.get("vars", {})
    out.update(varied)
    # a metric named like a key the rows vary (epochs: the epochs run) must not hide that key's value
    out.update({(f"{k}_run" if k in varied else k): metrics.get(k) for k in METRICS})
    return out


def run_row(row, out_dir, threads=None, stop_requested=None):
    """Run (or skip, or resume) one row's fit into ``out_dir``; return its summary dict.  Never raises for a fit
    that fails: the summary says ``status`` (finished, early_stopped, numerical_failure, failed, interrupted),
    ``message``, ``exit_code`` (the code ``cellbox-nb train`` would exit with) and ``numba_threads`` (used)."""
    import numba

    from .fit.train import RESUME_HINT, train

    path = os.path.join(out_dir, row["file"])
    fit, unreadable = _read_existing(path)
    cfg, source = row["config"], row["source"]
    if is_done(fit):
        return _skipped(row, fit)
    limit_threads(threads)
    resume = fit is not None and not config_differences(fit["config"], cfg)
    done = {"action": "resumed" if resume else "ran", "numba_threads": numba.get_num_threads()}
    replaced = f"an unreadable results file was replaced ({unreadable})" if unreadable else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the driver reported the data readers' warnings once
            ds = dataset_for(cfg, source)
        if resume and source is not None and data_digest(ds) != data_digest(fit["dataset"]):
            raise ConfigError(f"'{row['file']}' holds an unfinished fit started on other data than '{row['data']}' "
                              f"holds now; give the row its original data, or remove the file to start again")
        res = train(ds, cfg, path, resume=resume, stop_requested=stop_requested)  # (the data checked above)
        failed = (res.get("metrics") or {}).get("failed_predictions")
        notes = [replaced] if replaced else []
        if failed:  # (what `cellbox-nb train` warns of)
            notes.append(f"with the fitted parameters the solve failed on {failed} of {ds.M} conditions (their "
                         f"predictions are NaN); the metrics leave them out")
        return _row_summary(row, res, message="; ".join(notes), **done)
    except NumericalError as exc:
        fit = _existing(path)
        if fit is not None and fit["status"] == "numerical_failure":
            return _row_summary(row, fit, message=str(exc), exit_code=exc.exit_code, **done)
        return _row_summary(row, status="failed", message=str(exc), exit_code=exc.exit_code, **done)
    except OutputInUse as exc:  # another process writes this row's file: nothing was run or resumed here
        return _row_summary(row, status="failed", action="refused", message=str(exc), exit_code=exc.exit_code,
                            numba_threads=done["numba_threads"])
    except Interrupted as exc:  # (a sweep row continues when the sweep runs again, not with train --resume)
        message = str(exc).replace(RESUME_HINT, "(run the same sweep again to continue)")
        return _row_summary(row, status="interrupted", message=message, exit_code=EXIT_INTERRUPTED, **done)
    except Exception as exc:  # reported in the summary as the command line words it, not lost in a worker's log
        code, text, _ = describe(exc)
        return _row_summary(row, status="failed", message=text, exit_code=code, **done)


def _skipped(row, fit, digests=None):
    """The summary of a row whose fit is done (is_done): skipped, or failed when the row reads a data file that
    no longer holds the fit's data (the file name hashes the path as given, not the file).  ``digests``: a dict
    to keep the data files' digests in across rows (each file is read once)."""
    source = row["source"]
    if source is not None:
        key = (source, row["config"]["tfinal"])
        digests = {} if digests is None else digests
        try:
            if key not in digests:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    digests[key] = data_digest(dataset_for(row["config"], source))
            same = digests[key] == data_digest(fit["dataset"])
        except CellboxError as exc:
            return _row_summary(row, status="failed", action="skipped", message=str(exc), exit_code=exc.exit_code)
        if not same:
            return _row_summary(row, status="failed", action="skipped", exit_code=ConfigError.exit_code,
                                message=f"'{row['file']}' holds a finished fit on other data than '{row['data']}' "
                                        f"holds now (the data changed, or a sweep run in another folder wrote this "
                                        f"one); remove the file to fit again, or write to another folder")
    return _row_summary(row, fit, action="skipped")


def collect(rows, out_dir):
    """Summaries of every row from the results files present (status pending where there is none)."""
    out = []
    for row in rows:
        path = os.path.join(out_dir, row["file"])
        fit, unreadable = _read_existing(path)
        if unreadable:  # (a rerun of the sweep fits the row again)
            out.append(_row_summary(row, status="failed", action="collected", exit_code=InputDataError.exit_code,
                                    message=f"{unreadable}; run the sweep again to redo the row"))
            continue
        if fit is not None and fit["status"] == "running" and is_being_written(path) is False:
            out.append(_row_summary(row, fit, status="interrupted", action="collected",
                                    message="no process is writing it (a fit killed after its last checkpoint, or "
                                            "its node lost); run the sweep again to resume it"))
            continue
        status = None if fit is not None else "pending"
        out.append(_row_summary(row, fit, status=status, action="collected"))
    return out


# -- many rows on Dask -----------------------------------------------------------------------------------------
def _stop_flag(name):
    """A stop_requested callable for a fit on a Dask worker: polls the named distributed Event at most once a
    second, so an interrupted sweep lets running fits write a checkpoint and stop (status interrupted)."""
    state = {"next": 0.0, "set": None}

    def check():
        now = time.monotonic()
        if state["set"] is None and now >= state["next"]:
            state["next"] = now + 1.0
            try:
                from distributed import Event

                if Event(name).is_set():
                    state["set"] = "sweep interrupt"
            except Exception:  # no scheduler reachable: keep going
                pass
        return state["set"]

    return check


def _run_row_on_worker(row, out_dir, threads, event_name):
    stop = _stop_flag(event_name)
    if stop():  # the sweep was interrupted before this fit started
        return _row_summary(row, status="pending", action="not run")
    return run_row(row, out_dir, threads=threads, stop_requested=stop)


def run_sweep(rows, out_dir, *, scheduler=None, workers=None, threads=1, retries=0, stop_requested=None,
              on_result=None, grace_s=60.0):
    """Run every row not yet done on Dask; return the summaries in row order.

    ``scheduler``: address (or scheduler-file path) of a running Dask scheduler; None starts a LocalCluster of
    ``workers`` processes with one task thread each and the thread environment of :func:`worker_env`.
    ``stop_requested()`` (polled twice a second) returning a true value stops the sweep: running fits write a
    checkpoint (up to ``grace_s`` seconds), the summary is written, and Interrupted is raised.
    ``on_result(summary, n_finished, n_total)`` is called as rows complete.
    """
    created = not os.path.isdir(out_dir)
    make_out_folder(out_dir)
    results = {}
    todo = []
    digests = {}
    for row in rows:
        fit = _existing(os.path.join(out_dir, row["file"]))
        if is_done(fit):
            results[row["index"]] = _skipped(row, fit, digests)
            if on_result:
                on_result(results[row["index"]], len(results), len(rows))
        else:
            todo.append(row)
    total = len(rows)
    interrupted = None
    if todo:
        try:
            interrupted = _dask_loop(todo, out_dir, results, total, scheduler=scheduler, workers=workers,
                                     threads=threads, retries=retries, stop_requested=stop_requested,
                                     on_result=on_result, grace_s=grace_s)
        except ConfigError:  # no cluster to run on (--scheduler): leave no empty output folder behind
            if created and not os.listdir(out_dir):
                os.rmdir(out_dir)
            raise
    summaries = [results.get(r["index"]) or _row_summary(r, action="not run", status="pending") for r in rows]
    write_summary(out_dir, summaries)
    if interrupted:
        done = sum(s["status"] in DONE for s in summaries)
        raise Interrupted(f"sweep stopped by {interrupted}: {done} of {total} fits done, summary in "
                          f"'{os.path.join(out_dir, SUMMARY_CSV)}'; run the same command again to finish (done fits "
                          f"are skipped, interrupted ones resume from their checkpoint)")
    return summaries


def _client(scheduler, workers, threads):
    try:
        import logging

        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("cellbox-nb sweep needs Dask distributed: pip install 'cellbox-nb[sweep]' (or run one "
                          "row without Dask: --task-index I)") from None
    if scheduler is not None:
        if not str(scheduler).strip():
            raise ConfigError("--scheduler: empty (give a scheduler address, tcp://HOST:PORT, or a scheduler file)")
        try:
            if os.path.isfile(scheduler):
                return Client(scheduler_file=scheduler), None
            return Client(scheduler), None
        except (ValueError, TypeError, KeyError, AssertionError, OSError, TimeoutError) as exc:
            what = "scheduler file" if os.path.isfile(scheduler) else "address"
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"--scheduler {scheduler!r}: cannot connect to this {what} ({detail}); give "
                              f"tcp://HOST:PORT or the file a `dask scheduler --scheduler-file` wrote") from None
    # The workers start with SIGINT ignored (a disposition a child keeps): a Ctrl-C at the terminal reaches the
    # whole process group, and workers that died of it left their fits without a checkpoint, the parent waiting
    # out its grace period and a summary saying "not run"; the parent's own handler stops the sweep instead.
    # A worker the nanny restarts later (after a crash) is started by this process with its own handler back in
    # place, so every worker also ignores SIGINT itself when it starts (the preload below).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        # (no dashboard; the scheduler's HTTP server still starts, on a free port: with None it asked for 8787
        # and warned when another program had it)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=":0", scheduler_kwargs={"dashboard": False},
                               silence_logs=logging.ERROR, env=worker_env(threads), preload=[__name__])
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    return Client(cluster), cluster


def dask_setup(worker=None):
    """Dask's preload hook, run in each LocalCluster worker process's main thread as it starts: ignore SIGINT
    (the sweep's own process turns Ctrl-C into a stop with checkpoints; see _client)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _dask_loop(todo, out_dir, results, total, *, scheduler, workers, threads, retries, stop_requested, on_result,
               grace_s):
    client, cluster = _client(scheduler, workers, threads)
    from distributed import Event, as_completed

    event_name = f"cellbox-nb-sweep-stop-{os.getpid()}-{time.time_ns()}"
    out_dir = os.path.abspath(out_dir)
    attempts = {}
    ac = as_completed()
    futures = {}

    def submit(row):
        attempts[row["index"]] = attempts.get(row["index"], 0) + 1
        fut = client.submit(_run_row_on_worker, row, out_dir, threads, event_name, pure=False,
                            key=f"fit-{row['id']}-{attempts[row['index']]}-{event_name[-12:]}")
        futures[fut] = row
        ac.add(fut)

    interrupted = None
    try:
        for row in todo:
            submit(row)
        deadline = None
        while not ac.is_empty():
            batch = ac.next_batch(block=False)
            if not batch:
                if interrupted is None and stop_requested is not None:
                    interrupted = stop_requested()
                    if interrupted:
                        Event(event_name, client=client).set()
                        deadline = time.monotonic() + grace_s
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(0.5 if interrupted is None else 0.1)
                continue
            for fut in batch:
                row = futures.pop(fut)
                try:
                    summary = fut.result()
                except Exception as exc:  # the task itself was lost (worker died, cancelled, ...)
                    summary = _row_summary(row, status="failed", action="ran", exit_code=EXIT_INTERNAL,
                                       message=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
                summary["attempts"] = attempts[row["index"]]
                if summary["status"] == "failed" and attempts[row["index"]] <= retries and not interrupted:
                    submit(row)
                    continue
                results[row["index"]] = summary
                if on_result:
                    on_result(summary, len(results), total)
    except KeyboardInterrupt:
        interrupted = "SIGINT"
    finally:
        for fut in futures:
            fut.cancel()
        client.close()
        if cluster is not None:
            cluster.close()
    return interrupted


# -- summary ---------------------------------------------------------------------------------------------------
def write_summary(out_dir, summaries):
    """Write ``summary.json`` (rows and counts) and ``summary.csv`` atomically; return both paths."""
    counts = {"fits": len(summaries)}
    for s in summaries:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    doc = {"counts": counts, "rows": summaries}
    paths = (os.path.join(out_dir, SUMMARY_JSON), os.path.join(out_dir, SUMMARY_CSV))
    write_bytes_atomically(paths[0], json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n")
    columns = []
    for s in summaries:
        columns += [k for k in s if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for s in summaries:
        writer.writerow({k: ("" if s.get(k) is None else s.get(k)) for k in columns})
    write_bytes_atomically(paths[1], buf.getvalue())
    return paths


def exit_code(summaries):
    """0 when every row ended ok; else the exit code of the first row that did not (in row order)."""
    for s in summaries:
        if s["status"] not in OK:
            return s["exit_code"] or EXIT_INTERNAL
    return 0
