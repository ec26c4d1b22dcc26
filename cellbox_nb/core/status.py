"""Status codes that kernels write per condition instead of raising, and their messages."""

import enum

import numpy as np


class Status(enum.IntEnum):
    SUCCESS = 0
    MAX_STEPS = 1
    DT_UNDERFLOW = 2
    NONFINITE = 3
    DENSE_OVERFLOW = 4


MESSAGES = {
    Status.SUCCESS: "success",
    Status.MAX_STEPS: "the maximum number of steps was reached (the ODE is stiff or blows up; raise max_steps "
                      "or loosen the tolerances)",
    Status.DT_UNDERFLOW: "the step size underflowed (the solution changes too fast to resolve: the ODE is stiff "
                         "or singular, or it grows without bound, e.g. with a negative decay, until every trial "
                         "step overflows)",
    Status.NONFINITE: "the solution became non-finite (NaN or Inf)",
    Status.DENSE_OVERFLOW: "the stored forward trajectory exceeded max_dense_bytes (the adjoint needs it; raise "
                           "the limit or loosen the tolerances)",
}

# Plain ints for the kernels (Numba reads module-level ints as constants).
SUCCESS = int(Status.SUCCESS)
MAX_STEPS = int(Status.MAX_STEPS)
DT_UNDERFLOW = int(Status.DT_UNDERFLOW)
NONFINITE = int(Status.NONFINITE)
DENSE_OVERFLOW = int(Status.DENSE_OVERFLOW)


def describe(status):
    """One line summarising an array of per-condition status codes, e.g. 'condition 3: ...'."""
    status = np.asarray(status)
    bad = np.flatnonzero(status != SUCCESS)
    if bad.size == 0:
        return MESSAGES[Status.SUCCESS]
    first = int(bad[0])
    more = f" (and {bad.size - 1} more condition{'s' if bad.size > 2 else ''})" if bad.size > 1 else ""
    return f"condition {first}: {MESSAGES[Status(int(status[first]))]}{more}"
