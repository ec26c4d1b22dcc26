"""cellbox-nb: learn CellBox cell-signalling networks, dx/dt = alpha * tanh(W x - u) - d * x, from perturbation data.

Public API: :func:`solve` (forward responses) and :func:`loss_and_grad` (loss and its continuous-adjoint gradient).
"""

import importlib
import importlib.util
import os

# Numba's colour highlighting (colorama) writes a terminal reset to stdout at exit wherever stdout is a terminal,
# and mpirun gives every rank a pseudo-terminal: `mpirun ... --json > out.json` would not hold one JSON object.
# Set before the first import of numba (by cellbox_nb.api, on first use).
os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")

from .errors import CellboxError, ConfigError, InputDataError, Interrupted, NumericalError  # noqa: E402

# solve, loss_and_grad and SolveError are loaded on first use (PEP 562): importing the package stays cheap, so the
# command line reaches its own error and signal handling before numba (~0.3 s) is imported, and a Ctrl-C during
# that import is one "error: interrupted" line instead of a traceback.
_FROM_API = ("solve", "loss_and_grad", "SolveError")


def __getattr__(name):
    if name in _FROM_API:
        from . import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    # the package's own submodules, as attributes, as when importing the package imported them all
    # (`import cellbox_nb; cellbox_nb.api.solve`, `cellbox_nb.config.LOCKSTEP_MIN_N`)
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_FROM_API))


__version__ = "0.1.0"

__all__ = ["solve", "loss_and_grad", "SolveError", "CellboxError", "ConfigError", "InputDataError",
           "NumericalError", "Interrupted", "__version__"]
