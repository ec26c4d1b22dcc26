"""Scalar step-size control, separate from the Runge-Kutta stages.

Variant chosen: the integral (I) controller of scipy.integrate's RK solvers (Hairer, Norsett & Wanner I, II.4):
factor = SAFETY * err**(-1/(q+1)) with q = 4 the order of the embedded estimate, clipped to
[MIN_FACTOR, MAX_FACTOR], and no growth on the step right after a rejection.  With the optional PI term
(beta > 0, Gustafsson's controller as in Hairer & Wanner II, IV.2) the exponent becomes 1/(q+1) - 0.75 beta and
the previous accepted error enters as err_prev**beta; beta = 0 (the default) is the I controller and makes
step sequences comparable with scipy's.  The error norm is the RMS of the error in tolerance units,
err_i / (atol + rtol * max(|y_i|, |y_new_i|)).
"""

import math

from .._jit import leaf
from ..config import MAX_FACTOR, MIN_FACTOR, MIN_STEP_ULPS, SAFETY
from .status import DT_UNDERFLOW, MAX_STEPS, SUCCESS

ERROR_EXPONENT = -1.0 / 5.0  # -1 / (order of the error estimate + 1), Tsit5's embedded method has order 4
EPS = 2.220446049250313e-16  # float64 machine epsilon
TINY = 5e-324  # smallest positive float64

# The functions below are plain Python on scalars and 1-D arrays (no decorators): ``leaf`` compiles them for the
# CPU here, and cellbox_nb.cuda compiles the same functions as CUDA device functions.


def rms_error_norm_py(err, y0, y1, rtol, atol):
    """RMS of err / (atol + rtol * max(|y0|, |y1|)) over the n components; NaN propagates."""
    n = err.shape[0]
    acc = 0.0
    for i in range(n):
        sc = atol + rtol * max(abs(y0[i]), abs(y1[i]))
        e = err[i] / sc
        acc += e * e
    return math.sqrt(acc / n) if n > 0 else 0.0


def step_factor_py(err_norm, err_prev, rejected_last, accept, beta):
    """Factor for the next step size given the scaled error of this one (err_norm <= 1 means accept)."""
    if not math.isfinite(err_norm):
        return MIN_FACTOR
    if err_norm == 0.0:
        factor = MAX_FACTOR
    else:
        factor = SAFETY * err_norm ** (ERROR_EXPONENT + 0.75 * beta)
        if beta > 0.0 and accept:
            factor *= err_prev ** beta
    if accept:
        factor = min(MAX_FACTOR, factor)
        if rejected_last:
            factor = min(1.0, factor)
    else:
        factor = max(MIN_FACTOR, min(factor, SAFETY))
    return factor


def step_limit_py(n_tried, max_steps, h, t):
    """Status of a condition about to try a step of size h at time t after n_tried attempts: SUCCESS to go on,
    MAX_STEPS at the attempt limit, DT_UNDERFLOW when h is below MIN_STEP_ULPS times eps * |t| (between 1 and 2
    ulps of t: the step could not move t)."""
    if n_tried >= max_steps:
        return MAX_STEPS
    if h < MIN_STEP_ULPS * max(abs(t) * EPS, TINY):
        return DT_UNDERFLOW
    return SUCCESS


rms_error_norm = leaf(rms_error_norm_py)
step_factor = leaf(step_factor_py)
step_limit = leaf(step_limit_py)
