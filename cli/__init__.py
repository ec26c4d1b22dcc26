"""The ``cellbox-nb`` command line, installed as the sub-package ``cellbox_nb._cli`` (entry point: main.main).

Importing this sub-package is the first thing the console script does.  In the console script (``sys.argv[0]``
named ``cellbox-nb``), while the command line's modules are
imported (until the end of main.py's import), a Ctrl-C (SIGINT) ends the process at once with one
``error: interrupted`` line and exit code 130: nothing has been read or written yet, and Python's default handler
would print a KeyboardInterrupt traceback from inside an import.  Then SIGINT is Python's again (in-process users of
the command line, tests, get their KeyboardInterrupt).  A SIGINT that was ignored when the process started stays
ignored; outside the main thread nothing is installed.
"""

import os as _os
import signal as _signal
import sys as _sys
import threading as _threading


def _interrupted_while_starting(_signum, _frame):
    try:
        _os.write(2, b"error: interrupted\n")
    finally:
        _os._exit(130)


if (_os.path.basename(_sys.argv[0] if _sys.argv else "") == "cellbox-nb"  # the console script, not a library user
        and _threading.current_thread() is _threading.main_thread()
        and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler):
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)


def _startup_done():
    """Give SIGINT back to Python (KeyboardInterrupt) once the command line is loaded (end of main.py); commands
    that write install their own handlers (``_common.catch_stop_signals``)."""
    if _threading.current_thread() is not _threading.main_thread():
        return
    if _signal.getsignal(_signal.SIGINT) is _interrupted_while_starting:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
