"""``cellbox-nb sweep``: many fits from one spec, on Dask or one row per job-array task (cellbox_nb.sweep)."""

from __future__ import annotations

import os
import re

import click

from cellbox_nb.errors import ConfigError

from ._common import catch_stop_signals, info, json_option, one_line, print_json, run_command

CONFLICTS_WITH_TASK = ("scheduler", "workers", "retries", "collect")


def _default_out(spec):
    stem, _ = os.path.splitext(os.path.abspath(spec))
    return f"{stem}_sweep"


def _fail_row(summary):
    why = one_line(summary["message"]) or f"{summary['status']} ({summary['action']})"  # (a done row has no message)
    click.echo(f"error: row {summary['index']} ({summary['file']}): {why}", err=True)
    raise click.exceptions.Exit(summary["exit_code"])


@click.command()
@click.argument("spec", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(), default=None, metavar="DIR",
              help="Folder for the results files (one per fit) and summary.csv/summary.json "
                   "[default: SPEC without its extension + '_sweep'].")
@click.option("--scheduler", default=None, metavar="ADDRESS|FILE",
              help="Address (tcp://host:8786) or scheduler file of a running Dask scheduler "
                   "[default: start a LocalCluster on this machine].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="LocalCluster worker processes [default: cores // threads, at most one per fit].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Numba threads per fit [default: 1 on Dask workers; the cores given with --task-index].")
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True,
              help="Run a fit that failed with an error (not a numerical failure) again up to N times.")
@click.option("--task-index", type=click.IntRange(min=0), default=None, metavar="I",
              help="Run only row I of the spec, in this process, without Dask (SLURM job arrays) "
                   "[default: $SLURM_ARRAY_TASK_ID when set, except with --collect and --dry-run].")
@click.option("--collect", is_flag=True, help="Run nothing; write the summary from the results files present.")
@click.option("--dry-run", is_flag=True, help="Check the spec and its data, list the rows, run nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No per-fit progress lines on stderr.")
@json_option
@click.pass_context
@run_command
def sweep(ctx, spec, out, scheduler, workers, threads, retries, task_index, collect, dry_run, quiet, as_json):
    """Run every fit of SPEC (a YAML/JSON/TOML grid or list of fit configs): one HDF5 results file per fit and a
    summary table (summary.csv, summary.json) in --out.

    A rerun skips the fits that are done and resumes unfinished ones from their checkpoint. Threads:
    workers x Numba threads x BLAS threads <= the cores given (SLURM_CPUS_PER_TASK or the CPU affinity mask).
    Exit codes: 0 every fit ok; 2 bad spec or options; 3 bad data; otherwise the code of the first fit that did
    not end ok (4 numerical failure, 1 error); 75 interrupted, or with --collect rows that have not run (run the
    same command again to continue)."""
    from cellbox_nb import sweep as sw

    # SLURM_ARRAY_TASK_ID set around a --collect / --dry-run is not a row to run (read here, not by click, so
    # that it is not even parsed then)
    from_env = (task_index is None and not (collect or dry_run)
                and bool(os.environ.get("SLURM_ARRAY_TASK_ID", "").strip()))  # (set but empty: unset)
    if from_env:
        text = os.environ["SLURM_ARRAY_TASK_ID"]
        if not re.fullmatch(r"\s*[0-9]+\s*", text):
            raise ConfigError(f"SLURM_ARRAY_TASK_ID {text!r} is not a row index (a whole number >= 0); unset it "
                              f"to run the whole sweep on Dask")
        task_index = int(text)
    if task_index is not None:
        given = [f"--{name}" for name in CONFLICTS_WITH_TASK
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            origin = "SLURM_ARRAY_TASK_ID" if from_env else "--task-index"
            raise ConfigError(f"{origin} runs one row without Dask; it excludes {', '.join(given)}")
    if scheduler is not None and not scheduler.strip():
        raise ConfigError("--scheduler: empty (give a scheduler address, tcp://HOST:PORT, or a scheduler file)")
    if scheduler is not None and workers is not None:
        raise ConfigError("--workers sizes the LocalCluster; size an existing cluster (--scheduler) where it starts")
    rows = sw.load_spec(spec)
    if task_index is not None and task_index >= len(rows):
        origin = "SLURM_ARRAY_TASK_ID" if from_env else "--task-index"
        raise ConfigError(f"{origin} {task_index} is out of range: the spec has {len(rows)} fit(s), rows "
                          f"0..{len(rows) - 1}")
    out = out or _default_out(spec)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out '{out}' exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ConfigError(f"output folder '{parent}' " + ("is a file, not a folder" if os.path.exists(parent) else
                                                          "does not exist"))

    if collect:
        if not os.path.isdir(out):
            raise ConfigError(f"--collect: '{out}' does not exist (no fit of this sweep has run)")
        summaries = sw.collect(rows, out)
        sw.write_summary(out, summaries)
        return _finish(out, summaries, as_json)

    checked = rows if task_index is None else rows[task_index:task_index + 1]
    for message in sw.check_rows(checked, where=f"sweep spec {spec}", check_backend=scheduler is None):
        info(f"warning: {message}")
    if dry_run:
        workers_, threads_ = (None, threads or 1) if scheduler or task_index is not None else \
            sw.thread_budget(workers, threads, fits=len(rows))
        plan = {"spec": spec, "out": out, "fits": len(rows), "workers": workers_, "threads": threads_,
                "cores": sw.cores_available(),
                "rows": [{k: r[k] for k in ("index", "id", "file", "data", "vars")} for r in rows]}
        if as_json:
            print_json(plan)
        else:
            info(f"{len(rows)} fit(s) -> {out}")
            for r in rows:
                info(f"  {r['index']:>4}  {r['file']}  {r['vars']}")
        return None

    if task_index is not None:
        _, threads = sw.thread_budget(1, threads or sw.cores_available())
        sw.make_out_folder(out)
        stop = catch_stop_signals()
        summary = sw.run_row(rows[task_index], out, threads=threads, stop_requested=stop)
        if as_json:
            print_json(summary)
        elif not quiet and summary["status"] in sw.OK:  # (a row that did not end ok is the error line alone)
            info(_line(summary, 1, 1))
        if summary["status"] not in sw.OK:
            _fail_row(summary)
        return None

    workers, threads = (None, threads or 1) if scheduler else sw.thread_budget(workers, threads, fits=len(rows))
    stop = catch_stop_signals()
    if not quiet:
        where = scheduler or f"a LocalCluster of {workers} worker(s) x {threads} Numba thread(s)"
        info(f"sweep: {len(rows)} fit(s) on {where} -> {out}")

    def progress(summary, finished, total):
        if not quiet:
            info(_line(summary, finished, total))

    summaries = sw.run_sweep(rows, out, scheduler=scheduler, workers=workers, threads=threads, retries=retries,
                             stop_requested=stop, on_result=progress)
    return _finish(out, summaries, as_json)


def _line(s, finished, total):
    shown = f"{s['status']}"
    if s.get("pearson_W") is not None:
        shown += f", r(W) {s['pearson_W']:.3f}"
    if s.get("mae_test") is not None:
        shown += f", test MAE {s['mae_test']:.3g}"
    if s.get("wall_s") is not None:
        shown += f", {s['wall_s']:.1f} s"
    if s["message"]:
        shown += f": {one_line(s['message'])}"
    return f"[{finished}/{total}] row {s['index']} {s['action']}: {shown}"


def _finish(out, summaries, as_json):
    """Print the sweep's outcome; exit with the code of the first fit that did not end ok (one error line)."""
    from cellbox_nb import sweep as sw

    counts, actions = {}, {}
    for s in summaries:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
        actions[s["action"]] = actions.get(s["action"], 0) + 1
    files = {"csv": os.path.join(out, sw.SUMMARY_CSV), "json": os.path.join(out, sw.SUMMARY_JSON)}
    if as_json:
        print_json({"out": out, "fits": len(summaries), "status": counts, "actions": actions, "summary": files,
                    "rows": [{k: s[k] for k in ("index", "file", "status", "action", "attempts")}
                             for s in summaries]})
    else:
        shown = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        info(f"sweep: {len(summaries)} fit(s): {shown}; summary in {files['csv']}")
    code = sw.exit_code(summaries)
    if code:
        bad = [s for s in summaries if s["status"] not in sw.OK]
        shown = ", ".join(f"{s['index']} ({s['status']})" for s in bad[:5]) + (", ..." if len(bad) > 5 else "")
        click.echo(f"error: {len(bad)} of {len(summaries)} fit(s) did not end ok: rows {shown}; messages in "
                   f"'{files['csv']}'", err=True)
        raise click.exceptions.Exit(code)
