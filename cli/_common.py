"""Shared pieces of the cellbox-nb commands: error mapping, common options, output helpers.

Every command body is wrapped by :func:`run_command`, which turns a ``CellboxError`` into its exit code with one
``error: ...`` line on stderr, and any other exception into exit code 1 with one line (the full traceback is printed
only when the environment variable ``CELLBOX_NB_DEBUG`` is ``1``). Click's own usage errors keep click's handling
(exit code 2).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback

import click

from cellbox_nb.errors import ConfigError, describe

DEBUG_ENV = "CELLBOX_NB_DEBUG"


def one_line(text: str) -> str:
    """Collapse a message onto one line."""
    return " ".join(str(text).split())


def run_command(fn):
    """Decorate a command body so that failures end the process with the documented exit code and one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # stdout closed early (e.g. piped into head): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except Exception as exc:  # one line with the documented exit code (cellbox_nb.errors.describe)
            code, text, internal = describe(exc)
            debug = os.environ.get(DEBUG_ENV) == "1"
            if debug:
                traceback.print_exc(file=sys.stderr)
            hint = f" (set {DEBUG_ENV}=1 for the traceback)" if internal and not debug else ""
            click.echo(f"error: {text}{hint}", err=True)
            raise click.exceptions.Exit(code) from None

    return wrapper


def catch_stop_signals(names=("SIGTERM", "SIGUSR1", "SIGINT")):
    """Install handlers that turn the signals ``names`` into a stop request: the fit or sweep writes a checkpoint at
    its next epoch and exits with code 75 (EXIT_INTERRUPTED).  Returns ``stop_requested()``: the first signal's
    name, or None.  A second Ctrl-C (SIGINT) ends the process at once, by the signal (exit status 130); the
    results file is then its last complete checkpoint.  (Python's own SIGINT handler raised KeyboardInterrupt
    inside the Numba kernels' dispatch: an internal error and no checkpoint.)"""
    import signal

    received = []

    def say(text):  # a raw write: the handler may run in the middle of a buffered stderr write
        try:
            os.write(sys.stderr.fileno(), text.encode("utf-8", "replace"))
        except (OSError, ValueError):
            pass

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        if name == "SIGINT" and "SIGINT" in received:
            say("error: interrupted (second Ctrl-C): stopped at once; the results file holds the last checkpoint\n")
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            return
        if name == "SIGINT":
            say("\ninterrupt: stopping after this epoch with a checkpoint (Ctrl-C again stops at once)\n")
        received.append(name)

    # an ignored SIGINT stays ignored (a job started in the background of a script: the terminal's Ctrl-C is not
    # for it)
    names = [n for n in names if not (n == "SIGINT" and signal.getsignal(signal.SIGINT) == signal.SIG_IGN)]
    previous = {name: signal.signal(getattr(signal, name), on_signal) for name in names}

    def restore():
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)

    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # the previous handlers come back when the command ends (in-process callers, tests)
        ctx.call_on_close(restore)
    return lambda: received[0] if received else None


def json_option(fn):
    """``--json``: print one JSON object on stdout instead of the human summary."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(fn)


def seed_option(fn):
    """``--seed S``: a non-negative integer seed (default 0)."""
    return click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                        help="Random seed (non-negative integer).")(fn)


def out_option(fn):
    """``--out PATH`` (required) and ``--overwrite``."""
    fn = click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")(fn)
    return click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
                        help="Output HDF5 file.")(fn)


def check_output_path(path: str, overwrite: bool, inputs=()) -> None:
    """Refuse (ConfigError, exit 2) an existing output file without ``--overwrite``, a missing folder, a path that
    names a folder, or one of the command's input files (``inputs``)."""
    if not path or path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise ConfigError(f"output file '{path}': must be a file name, not a folder")
    for src in inputs:
        if src and os.path.exists(src) and os.path.exists(path) and os.path.samefile(src, path):
            raise ConfigError(f"output file '{path}' is the input '{src}'; write the results elsewhere")
    if os.path.exists(path) and not overwrite:
        raise ConfigError(f"output file '{path}' exists; pass --overwrite to replace it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"output folder '{folder}' does not exist")


def print_json(obj: dict) -> None:
    """Write ``obj`` as one JSON line on stdout."""
    click.echo(json.dumps(obj, allow_nan=False))


def info(message: str) -> None:
    """Write a human-readable message on stderr."""
    click.echo(message, err=True)
