"""The ``cellbox-nb`` command line, installed as the sub-package ``cellbox_nb._cli`` (entry point: main.main).

Importing this sub-package is the first thing the console script does.  Until :func:`main.main` runs, a Ctrl-C
(SIGINT) ends the process at once with one ``error: interrupted`` line and exit code 130: nothing has been read or
written yet, and Python's default handler would print a KeyboardInterrupt traceback from inside an import.  A SIGINT
that was ignored when the process started stays ignored.
"""

import os as _os
import signal as _signal


def _interrupted_while_starting(_signum, _frame):
    try:
        _os.write(2, b"error: interrupted\n")
    finally:
        _os._exit(130)


if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)


def _startup_done():
    """Give SIGINT back to Python (KeyboardInterrupt) once the command line is loaded; commands that write install
    their own handlers (``_common.catch_stop_signals``)."""
    if _signal.getsignal(_signal.SIGINT) is _interrupted_while_starting:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
