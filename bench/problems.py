"""Seeded benchmark problems shared by the bench scripts (docs: bench/README.md).

The generator lives in the package, :mod:`cellbox_nb.benchmark`, so that ``cellbox-nb bench`` and these scripts
build the same problems; this module re-exports it for the scripts.
"""

from cellbox_nb import benchmark as _bm
from cellbox_nb.benchmark import (DATA_W_SCALE, GRID, IN_EDGES, NOISE, RHO, TFINAL, add_data, make_model,  # noqa: F401
                                  make_problem)
from cellbox_nb.errors import ConfigError


def parse_sizes(text, grid=GRID):
    """``"7,19"`` -> the grid entries (n, M, T) whose n is listed, in the order given (``n:M:T`` triples too);
    a bad token ends the script with its message."""
    try:
        return _bm.parse_sizes(text, grid)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
