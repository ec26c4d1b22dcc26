"""Public numerical API: ``solve`` and ``loss_and_grad`` (DESIGN.md section 4).

Validation, backend choice, and status codes -> exceptions live here; the kernels in ``core`` see only
checked, contiguous float64 arrays.
"""

import contextlib
import math

import numpy as np
from numba import get_num_threads

from . import config
from ._scratch import ScratchPool
from .core import status as st
from .core.adjoint import (ADJOINT_DISCRETE, ADJOINT_INTERPOLATING, ADJOINT_INTERPOLATING8, LOSS_MAE, LOSS_MSE,
                           QROWS_STEP, loss_grad_batch, worker_scratch_shapes)
from .core.adjoint8 import QROWS_STEP8
from .core.discrete import STAGE_STORE_FLOATS
from .core.forward import NPOLY, NSTAGE, solve_batch
from .core.lockstep import loss_grad_lockstep, solve_lockstep
from .core.quadrature import ordered_sum
from .errors import ConfigError, InputDataError, NumericalError

BACKENDS = ("cpu", "cuda")
LOSSES = {"mae": LOSS_MAE, "mse": LOSS_MSE}
ADJOINTS = ("interpolating", "discrete")
ADJOINT_INTEGRATORS = ("auto", "dop853", "tsit5")


class SolveError(NumericalError):
    """The ODE solve failed for at least one condition; ``status`` holds the per-condition codes."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = np.asarray(status)


_SCRATCH = ScratchPool(lambda: config.SCRATCH_KEEP_BYTES)  # the cpu drivers' scratch, kept between calls


def _scratch_shapes(workers, rows, cap, n, defer_rows, stages):
    """worker_scratch_shapes with a leading axis of one entry per worker."""
    return tuple((workers,) + shape for shape in worker_scratch_shapes(rows, cap, n, defer_rows, stages))


_EPS = float(np.finfo(np.float64).eps)
_TINY = float(np.finfo(np.float64).tiny)


def _array(name, value, ndim, shape=None, allow_nan=False):
    """``value`` as a C-contiguous, writeable float64 array (no copy when it is one already: the kernels only read
    their inputs), checked for dimensions, shape and (unless allow_nan) non-finite entries."""
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting
        raise InputDataError(f"{name}: must be a numeric array (rows of equal length)") from None
    if raw.dtype.kind not in "biuf":  # complex parts would be dropped with only a warning, strings parsed
        raise InputDataError(f"{name}: must be a real numeric array, got dtype {raw.dtype}")
    arr = raw.astype(np.float64, copy=False)
    if not (arr.flags.c_contiguous and arr.flags.writeable):  # (read-only arrays would make Numba compile the
        arr = np.array(arr, order="C")                       # kernels again for another argument type)
    if arr.ndim != ndim:
        raise InputDataError(f"{name}: expected {ndim} dimension(s), got shape {arr.shape}")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(arr.shape, shape)):
            if want is not None and got != want:
                raise InputDataError(f"{name}: expected shape {_fmt(shape)}, got {arr.shape}")
    if not allow_nan and not np.isfinite(arr).all():
        raise InputDataError(f"{name}: contains NaN or Inf")
    return arr


def _fmt(shape):
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"


def _positive(name, value):
    if isinstance(value, (bool, np.bool_, str, bytes)):  # (float() would take "1e-6" and True)
        raise ConfigError(f"{name}: must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{name}: must be a positive finite number, got {value!r}")
    return v


def _resolvable(name, rtol):
    """Refuse a relative tolerance under 100 eps: the error norm cannot get below it, so the steps shrink until
    they underflow (or, for the backward pass, take tens of thousands of steps)."""
    if rtol < config.RTOL_MIN:
        raise ConfigError(f"{name}: {rtol} is below what float64 can resolve (use >= {config.RTOL_MIN_TEXT})")


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name}: must be True or False, got {value!r}")
    return bool(value)


def _check_options(extra, allowed=()):
    unknown = sorted(set(extra) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(unknown)}")


def _model_arrays(W, alpha, U, t, decay):
    W = _array("W", W, 2)
    n = W.shape[0]
    if W.shape != (n, n):
        raise InputDataError(f"W: must be square, got shape {W.shape}")
    if n == 0:
        raise InputDataError("W: needs at least one node, got shape (0, 0)")
    alpha = _array("alpha", alpha, 1, (n,))
    U = _array("U", U, 2, (None, n))
    if U.shape[0] == 0:
        raise InputDataError("U: needs at least one condition (row)")
    t = _array("t", t, 1)
    if t.size == 0:
        raise InputDataError("t: needs at least one observation time")
    if t[0] <= 0.0:
        raise InputDataError(f"t: observation times must be positive (x(0) = 0 is the start), got t[0] = {t[0]}")
    if t[0] < _TINY:  # a subnormal first step would overflow 1 / h in the dense store
        raise InputDataError(f"t: the first observation time must be at least {_TINY:.3g} (the smallest normal "
                             f"float64), got t[0] = {t[0]}")
    if (t[1:] <= t[:-1]).any():
        k = int(np.flatnonzero(t[1:] <= t[:-1])[0])
        raise InputDataError(f"t: observation times must be strictly increasing (t[{k}] = {t[k]} >= "
                             f"t[{k + 1}] = {t[k + 1]})")
    d = np.ones(n) if decay is None else _array("decay", decay, 1, (n,))
    return W, alpha, U, t, d


def _solver_options(rtol, atol, max_steps, h0, pi_beta):
    rtol = _positive("rtol", rtol)
    atol = _positive("atol", atol)
    _resolvable("rtol", rtol)
    if (isinstance(max_steps, (bool, np.bool_)) or not isinstance(max_steps, (int, np.integer))
            or not 1 <= max_steps < 2 ** 63):
        raise ConfigError(f"max_steps: must be a positive integer below 2**63, got {max_steps!r}")
    h0 = 0.0 if h0 is None else _positive("h0", h0)
    try:
        pi_beta = float(pi_beta)
    except (TypeError, ValueError):
        raise ConfigError(f"pi_beta: must be a number in [0, 0.2], got {pi_beta!r}") from None
    if not 0.0 <= pi_beta <= 0.2:
        raise ConfigError(f"pi_beta: must be in [0, 0.2], got {pi_beta}")
    return rtol, atol, int(max_steps), h0, pi_beta


def _backend(backend):
    if backend not in BACKENDS:
        raise ConfigError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "cuda":
        from .cuda import require_cuda  # noqa: F401  (raises ConfigError when CUDA is unusable)

        require_cuda()
    return backend


def solve(W, alpha, U, t, *, rtol=config.DEFAULT_RTOL, atol=config.DEFAULT_ATOL, backend="cpu", decay=None,
          max_steps=config.MAX_STEPS, h0=None, pi_beta=0.0, on_failure="raise", full_output=False,
          precision="float64", **options):
    """Integrate dx/dt = alpha * tanh(W x - u) - decay * x, x(0) = 0, for every condition u (row of U).

    Parameters
    ----------
    W : (n, n) float64, W[i, j] = effect of node j on node i.
    alpha : (n,) gains.   U : (M, n) perturbations, one condition per row.
    t : (T,) observation times, strictly increasing, t[0] > 0.
    rtol, atol : tolerances of the adaptive Tsit5 solver (RMS error norm in tolerance units).
    backend : "cpu" (Numba, parallel over conditions) or "cuda".
    decay : (n,) decay rates d (default 1).   max_steps : attempted-step limit per condition.
    h0 : first step (default: Hairer's rule).   pi_beta : PI-controller coefficient (0 = I controller).
    on_failure : "raise" (SolveError, exit code 4 on the CLI) or "nan": no exception; the observation times a
        failed condition did not reach are NaN (those it reached before failing keep their values), and
        ``full_output`` says which conditions failed and why.
    full_output : also return a dict with per-condition ``status`` and ``stats``
        (accepted steps, rejected steps, right-hand-side evaluations).
    precision : "float64", or "float32" on the cuda backend (state and products in single precision, step
        control in double; use rtol >= 1e-5).

    Returns
    -------
    X : (M, T, n) float64, X[c, k] = x(t[k]) for condition c.
    """
    _check_options(options)
    W, alpha, U, t, d = _model_arrays(W, alpha, U, t, decay)
    rtol, atol, max_steps, h0, pi_beta = _solver_options(rtol, atol, max_steps, h0, pi_beta)
    if on_failure not in ("raise", "nan"):
        raise ConfigError(f"on_failure: must be 'raise' or 'nan', got {on_failure!r}")
    full_output = _flag("full_output", full_output)
    if _backend(backend) == "cuda":
        from .cuda import solve_cuda

        X, status, stats = solve_cuda(W, alpha, d, U, t, rtol, atol, h0, max_steps, pi_beta,
                                      dtype=_precision(precision, backend))
    else:
        _precision(precision, backend)
        M, n = U.shape
        if n >= config.LOCKSTEP_MIN_N:
            with _single_threaded_blas(True):
                X, status, stats = solve_lockstep(W, alpha, d, U, t, rtol, atol, h0, max_steps, pi_beta,
                                                  _lockstep_blocks(M, n), _lockstep_block(n))
        else:
            X, status, stats = solve_batch(W, alpha, d, U, t, rtol, atol, h0, max_steps, pi_beta)
    if on_failure == "raise" and (status != st.SUCCESS).any():
        raise SolveError(f"solve failed: {st.describe(status)}", status)
    if full_output:
        return X, {"status": status, "stats": stats}
    return X


def _precision(precision, backend):
    if precision not in ("float64", "float32"):
        raise ConfigError(f"precision: must be 'float64' or 'float32', got {precision!r}")
    if precision == "float32" and backend != "cuda":
        raise ConfigError("precision: 'float32' is available on the cuda backend only")
    return np.float32 if precision == "float32" else np.float64


def _grad_chunks(M, n):
    per_chunk = 8 * (n * n + 2 * n) + 1
    return max(1, min(M, config.GRAD_CHUNK_BYTES // per_chunk))


def _lockstep_block(n):
    """Most conditions in one lockstep block (config.LOCKSTEP_BLOCK, or by n when it is 0; see config)."""
    if config.LOCKSTEP_BLOCK > 0:
        return config.LOCKSTEP_BLOCK
    if n < config.LOCKSTEP_SMALL_BLOCK_N:
        return 16
    return 4 if n < config.LOCKSTEP_BIG_BLOCK_N else 32


def _lockstep_blocks(M, n):
    """Number of chunks for the lockstep kernels (each chunk runs its conditions in blocks of at most
    _lockstep_block): one per block, rounded up to an even number (so 2 threads get equal shares), at most M,
    within the dL/dW memory budget.  Fixed by M and n alone, so results do not depend on the thread count.  On
    many-core nodes a smaller CELLBOX_NB_LOCKSTEP_BLOCK gives more chunks to share."""
    blocks = -(-M // _lockstep_block(n))
    blocks = 2 * (-(-blocks // 2))
    return max(1, min(blocks, M, _grad_chunks(M, n)))


def _workers(chunks):
    """Parallel workers of the loss-and-gradient drivers: one per Numba thread, at most one per chunk.  Each runs a
    contiguous range of the chunks (fixed by M and n alone) with one scratch store, so the results do not depend on
    this number."""
    return max(1, min(get_num_threads(), chunks))


def loss_and_grad(W, alpha, U, t, Y, *, mask=None, loss="mae", rtol=config.DEFAULT_RTOL,
                  atol=config.DEFAULT_ATOL, backend="cpu", decay=None, adjoint_rtol=None, adjoint_atol=None,
                  w_mask=None, max_steps=config.MAX_STEPS, h0=None, pi_beta=0.0,
                  max_dense_bytes=config.MAX_DENSE_BYTES, full_output=False, precision="float64",
                  adjoint="interpolating", adjoint_integrator="auto", **options):
    """Loss between the model's x(t_k) and data Y, and its gradient by the continuous adjoint (or, if asked, the
    discrete adjoint of the forward pass's steps).

    The loss is the mean over observed entries of |x - y| ("mae") or (x - y)**2 ("mse"), with no
    regularisation term.

    Parameters
    ----------
    W, alpha, U, t, decay, rtol, atol, backend, max_steps, h0, pi_beta : as in :func:`solve`.
    Y : (M, T, n) data; entries where ``mask`` is False are ignored (they may be NaN).
    mask : (M, T, n) bool, True where Y is observed (default: all observed; Y must then be finite).
    loss : "mae" or "mse".
    adjoint : "interpolating" (default): the continuous adjoint, lam integrated backward with its own adaptive steps
        over x(t) read from the forward pass's dense output.  "discrete": the exact adjoint of the forward pass's
        accepted steps (step sizes held fixed), the gradient of the loss the forward pass computed; no tolerances
        of its own, one product W^T g per stage of each accepted forward step (cpu backend only).
    adjoint_rtol, adjoint_atol : tolerances of the interpolating backward pass (default: rtol, and per condition
        adjoint_rtol * max |dl/dx(t_k)|, the scale of the adjoint, so the gradient's relative accuracy is about
        adjoint_rtol); not accepted with adjoint="discrete".
    adjoint_integrator : what integrates lam in the interpolating adjoint: "dop853" (8th order, 12 stages a step),
        "tsit5", or "auto" (default): dop853 on the cpu backend, where loss and gradient take 0.82-0.88x the
        time they take with tsit5 (benchmark grid) for the same or a smaller gradient error (bench/RESULTS.md,
        eighth session), tsit5 on cuda (which has tsit5 only).  Not accepted with adjoint="discrete".
    w_mask : (n, n) bool, True where W is free; the gradient is zero elsewhere.
    max_dense_bytes : cap on the stored forward trajectory per in-flight condition (10n + 1 numbers a step on the
        cpu, 13n on cuda, 7n + 1 with adjoint="discrete"); a condition that needs more steps ends with status
        DENSE_OVERFLOW.
    precision : as in :func:`solve`.
    full_output : also return a dict with ``X`` (M, T, n), ``status`` and ``stats`` (M, 7): forward accepted,
        rejected, RHS evaluations, then the same for the backward pass, then the rank-one terms g x^T the dL/dW
        quadrature added (six per accepted backward step with tsit5, eight with dop853, fewer from n = 24 with
        tsit5 and n = 48 with dop853, where they are grouped per forward step; with adjoint="discrete": the
        forward's accepted steps, 0, six products W^T g and six terms per step).

    Returns
    -------
    loss : float
    grads : dict with "W" (n, n), "alpha" (n,) and "d" (n,) (the gradient for the decay, used when it is learned)
    """
    _check_options(options)
    full_output = _flag("full_output", full_output)
    W, alpha, U, t, d = _model_arrays(W, alpha, U, t, decay)
    M, n = U.shape
    T = t.shape[0]
    rtol, atol, max_steps, h0, pi_beta = _solver_options(rtol, atol, max_steps, h0, pi_beta)
    artol = rtol if adjoint_rtol is None else _positive("adjoint_rtol", adjoint_rtol)
    aatol = -1.0 if adjoint_atol is None else _positive("adjoint_atol", adjoint_atol)
    if adjoint not in ADJOINTS:
        raise ConfigError(f"adjoint: must be one of {', '.join(ADJOINTS)}, got {adjoint!r}")
    discrete = adjoint == "discrete"
    if discrete and backend == "cuda":
        raise ConfigError("adjoint: 'discrete' is available on the cpu backend only")
    if discrete and (adjoint_rtol is not None or adjoint_atol is not None):
        raise ConfigError("adjoint_rtol/adjoint_atol: the discrete adjoint has no tolerances of its own (it "
                          "follows the forward pass's steps); leave them unset or use adjoint='interpolating'")
    _resolvable("adjoint_rtol", artol)
    if adjoint_integrator not in ADJOINT_INTEGRATORS:
        raise ConfigError(f"adjoint_integrator: must be one of {', '.join(ADJOINT_INTEGRATORS)}, "
                          f"got {adjoint_integrator!r}")
    if discrete and adjoint_integrator != "auto":
        raise ConfigError("adjoint_integrator: the discrete adjoint follows the forward pass's Tsit5 steps and has "
                          "no integrator of its own; leave it unset or use adjoint='interpolating'")
    if backend == "cuda" and adjoint_integrator == "dop853":
        raise ConfigError("adjoint_integrator: the cuda backend integrates lam with tsit5 only")
    if loss not in LOSSES:
        raise ConfigError(f"loss: must be one of {', '.join(LOSSES)}, got {loss!r}")
    if mask is None:
        Y = _array("Y", Y, 3, (M, T, n))
        maskf = np.ones((M, T, n))
    else:
        try:
            mask_arr = np.asarray(mask)
        except (TypeError, ValueError):  # ragged nesting
            raise InputDataError(f"mask: must be a boolean array of shape ({M}, {T}, {n})") from None
        if mask_arr.shape != (M, T, n):
            raise InputDataError(f"mask: expected shape ({M}, {T}, {n}), got {mask_arr.shape}")
        if mask_arr.dtype != bool:
            raise InputDataError(f"mask: must be boolean, got dtype {mask_arr.dtype}")
        Y = _array("Y", Y, 3, (M, T, n), allow_nan=True)
        if not np.all(np.isfinite(Y[mask_arr])):
            raise InputDataError("Y: contains NaN or Inf at observed entries (mask them out)")
        Y = np.where(mask_arr, Y, 0.0)
        maskf = mask_arr.astype(np.float64)
    count = float(maskf.sum())
    if count == 0:
        raise InputDataError("mask: no observed entries")
    if w_mask is not None:
        try:
            w_mask = np.asarray(w_mask)
        except (TypeError, ValueError):
            raise InputDataError(f"w_mask: expected a boolean array of shape ({n}, {n})") from None
        if w_mask.shape != (n, n) or w_mask.dtype != bool:
            raise InputDataError(f"w_mask: expected a boolean array of shape ({n}, {n})")
    max_dense_bytes = _positive("max_dense_bytes", max_dense_bytes)
    backend = _backend(backend)
    # floats per component and step: x, 4 + 5 coefficients (interpolating) or x and tanh at the 6 stages; the cuda
    # backend keeps x_p, the 7 stages and the tanh quartic's 5 coefficients
    if discrete:
        per_step = STAGE_STORE_FLOATS
    else:
        per_step = 1 + NSTAGE + NPOLY + 1 if backend == "cuda" else 2 * NPOLY + 2
    max_dense_steps = max(1, int(max_dense_bytes // (8 * per_step * n + 16)))
    dense_init = min(config.DENSE_INITIAL_STEPS, max_dense_steps)
    if backend == "cuda":
        from .cuda import loss_grad_cuda

        loss_c, gW, galpha, gd, X, status, stats = loss_grad_cuda(
            W, alpha, d, U, t, Y, maskf, LOSSES[loss], rtol, atol, artol, aatol, h0, max_steps, pi_beta,
            max_dense_steps=max_dense_steps, dtype=_precision(precision, backend))
    else:
        _precision(precision, backend)
        # one accepted backward step may hand on up to QROWS_STEP (QROWS_STEP8) terms, so the buffers hold at
        # least that many
        args = (W, alpha, d, U, t, Y, maskf, LOSSES[loss], rtol, atol, artol, aatol, h0, max_steps, pi_beta)
        lockstep = n >= config.LOCKSTEP_MIN_N
        if discrete:
            kind = ADJOINT_DISCRETE
        elif adjoint_integrator == "tsit5":
            kind = ADJOINT_INTERPOLATING
        else:
            kind = ADJOINT_INTERPOLATING8
        defer_min_n = config.DEFER_DW_MIN_N_DOP853 if kind == ADJOINT_INTERPOLATING8 else config.DEFER_DW_MIN_N
        defer_rows = max(config.DEFER_DW_ROWS, QROWS_STEP, QROWS_STEP8) if n >= defer_min_n else 0
        chunks = _lockstep_blocks(M, n) if lockstep else _grad_chunks(M, n)
        workers = _workers(chunks)
        block = _lockstep_block(n) if lockstep else 1  # conditions a worker's store holds at a time
        shapes = _scratch_shapes(workers, block, dense_init, n, defer_rows, discrete)
        # single-threaded BLAS where the products run inside the parallel loop over chunks
        with _single_threaded_blas(lockstep or defer_rows > 0), _SCRATCH.borrow(shapes) as scratch:
            if lockstep:
                loss_c, gWc, gac, gdc, X, status, stats = loss_grad_lockstep(
                    *args, chunks, max_dense_steps, block, kind, workers, *scratch)
            else:
                loss_c, gWc, gac, gdc, X, status, stats = loss_grad_batch(
                    *args, chunks, max_dense_steps, kind, workers, *scratch)
        gW = _ordered_sum(gWc)
        galpha = _ordered_sum(gac)
        gd = _ordered_sum(gdc)
    if (status != st.SUCCESS).any():
        raise SolveError(f"loss_and_grad failed: {st.describe(status)}", status)
    total = 0.0
    for v in loss_c:  # condition order, so the value does not depend on threads
        total += v
    gW = gW / count
    if w_mask is not None:
        gW = np.where(w_mask, gW, 0.0)
    grads = {"W": gW, "alpha": galpha / count, "d": gd / count}
    if full_output:
        return total / count, grads, {"X": X, "status": status, "stats": stats}
    return total / count, grads


_BLAS_CONTROLLER = []


def _single_threaded_blas(active):
    """Context in which BLAS runs on one thread (threadpoolctl), so that matrix products called from the
    parallel loop over chunks neither oversubscribe the cores nor depend on BLAS's own thread count."""
    if not active:
        return contextlib.nullcontext()
    if not _BLAS_CONTROLLER:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot calls: load it before looking)
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


def _ordered_sum(chunks):
    if chunks.shape[0] == 1:  # one chunk (one condition, or a large n): nothing to add
        return chunks[0].copy()
    return ordered_sum(np.ascontiguousarray(chunks))
