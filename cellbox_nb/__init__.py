"""cellbox-nb: learn CellBox cell-signalling networks, dx/dt = alpha * tanh(W x - u) - d * x, from perturbation data.

Public API: :func:`solve` (forward responses) and :func:`loss_and_grad` (loss and its continuous-adjoint gradient).
"""

from .api import SolveError, loss_and_grad, solve
from .errors import CellboxError, ConfigError, InputDataError, Interrupted, NumericalError

__version__ = "0.1.0"

__all__ = ["solve", "loss_and_grad", "SolveError", "CellboxError", "ConfigError", "InputDataError",
           "NumericalError", "Interrupted", "__version__"]
