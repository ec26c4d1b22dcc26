"""cellbox-nb: learn CellBox cell-signalling networks, dx/dt = alpha * tanh(W x - u) - d * x, from perturbation data.

Public API: :func:`solve` (forward responses) and :func:`loss_and_grad` (loss and its continuous-adjoint gradient).
"""

import os

# Numba's colour highlighting (colorama) writes a terminal reset to stdout at exit wherever stdout is a terminal,
# and mpirun gives every rank a pseudo-terminal: `mpirun ... --json > out.json` would not hold one JSON object.
# Set before the first import of numba (below).
os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")

from .api import SolveError, loss_and_grad, solve  # noqa: E402
from .errors import CellboxError, ConfigError, InputDataError, Interrupted, NumericalError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["solve", "loss_and_grad", "SolveError", "CellboxError", "ConfigError", "InputDataError",
           "NumericalError", "Interrupted", "__version__"]
