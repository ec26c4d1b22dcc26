"""Exception types and the exit codes the command line maps them to.

Exit codes (DESIGN.md section 4): 0 ok, 1 internal error, 2 usage or config error, 3 invalid input data,
4 numerical failure, 75 interrupted after a checkpoint (resumable).
"""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_NUMERICAL = 4
EXIT_INTERRUPTED = 75


class CellboxError(Exception):
    """Base class of every error cellbox-nb raises on purpose."""

    exit_code = EXIT_INTERNAL


class ConfigError(CellboxError, ValueError):
    """A usage or configuration error: unknown option, wrong type, out-of-range value."""

    exit_code = EXIT_CONFIG


class OutputInUse(ConfigError):
    """The output file is being written by another cellbox-nb process (its writer lock is held)."""


class InputDataError(CellboxError, ValueError):
    """Invalid input data: malformed file, mismatched shapes or labels, non-finite values."""

    exit_code = EXIT_DATA


class NumericalError(CellboxError, RuntimeError):
    """The solver or the optimiser failed numerically (max steps, step underflow, non-finite values)."""

    exit_code = EXIT_NUMERICAL


class Interrupted(CellboxError):
    """The run stopped on a signal after writing a checkpoint; ``--resume`` continues it.  ``signal``: the
    signal's name (SIGTERM, ...) when one is known."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message, signal=None):
        super().__init__(message)
        self.signal = signal


def describe(exc):
    """How the command line reports an exception: ``(exit code, one-line message, internal)`` (the message without
    the ``error:`` prefix; ``internal`` for an unexpected exception, exit code 1).  Shared by the commands'
    wrapper and the MPI abort, so a rank's error reads as it would in one process."""
    text = " ".join(str(exc).split())
    if isinstance(exc, CellboxError):
        return exc.exit_code, text, False
    if isinstance(exc, OSError):  # the file system refused: an output path that cannot be written, a full disk
        where = f" '{exc.filename}'" if exc.filename else ""
        return EXIT_CONFIG, f"cannot write or read{where}: {exc.strerror or text}", False
    if isinstance(exc, MemoryError):
        return EXIT_INTERNAL, "out of memory (the problem is too large for this machine's memory)", False
    return EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {text}", True
