"""Every numerical default of cellbox-nb in one place.

Step-control constants follow scipy.integrate's conventions (Hairer, Norsett & Wanner, Solving ODEs I, II.4).
"""

import os

from .errors import ConfigError


def _env_int(name, default):
    """The integer in environment variable `name` (default when unset); anything else is a ConfigError that names
    the variable (it was a bare ValueError at import, reported as an internal error)."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}: expected an integer, got {text!r}") from None


DEFAULT_RTOL = 1e-6  # relative tolerance of the forward solve
DEFAULT_ATOL = 1e-8  # absolute tolerance of the forward solve
RTOL_MIN = 100 * 2.0**-52  # the smallest relative tolerance taken (100 eps): the error norm cannot get below it
RTOL_MIN_TEXT = "2.23e-14"  # RTOL_MIN rounded up, for messages (2.22e-14 would be under it)
MAX_STEPS = 20000  # attempted steps (accepted + rejected) per condition and pass before MAX_STEPS is reported

SAFETY = 0.9  # multiplies the optimal step-size factor
MIN_FACTOR = 0.2  # smallest allowed step decrease in one step
MAX_FACTOR = 10.0  # largest allowed step increase in one step
MIN_STEP_ULPS = 10.0  # a step below this many ulps of t is a step underflow (scipy: 10 * |nextafter(t) - t|)

# Storage for the dense forward trajectory the adjoint reads back (10n + 1 float64 per accepted step).
DENSE_INITIAL_STEPS = 64  # initial capacity per in-flight condition; doubled on demand
MAX_DENSE_BYTES = 512 * 2**20  # per in-flight condition; beyond it the condition reports DENSE_OVERFLOW
# The workers' dense-store scratch of loss_and_grad is kept between calls up to this many bytes in all (_scratch.py:
# fresh arrays each call cost page faults, about 8 % of a call at n = 99); 0 keeps none.
SCRATCH_KEEP_BYTES = _env_int("CELLBOX_NB_SCRATCH_KEEP_BYTES", 64 * 2**20)

# Gradient accumulators: conditions are grouped into fixed chunks (depending only on M and n, never on the
# thread count), each chunk sums its conditions in order, then chunks are summed in order.
GRAD_CHUNK_BYTES = 256 * 2**20  # memory budget for the per-chunk dL/dW accumulators
# From this n on, the dL/dW quadrature terms are buffered (grouped per forward step) and added by matrix products;
# below it, six rank-one terms per backward step go straight into gW.  Measured on the 2-core dev machine (bench/
# RESULTS.md, "Seventh session"; in-process interleaved A/B of the two settings, M = 100, T = 5), loss + gradient
# with buffers against without: n = 13 +7 %, 19 +3 %, 24 -2 %, 32 -5 %, 40 -10 %, 48 -11 %, 63 -13 % (the discrete
# adjoint: 19 -2 %, 24 -2 %, 40 -5 %).  (64 until this session, when the per-condition kernels got cheaper stages.)
DEFER_DW_MIN_N = _env_int("CELLBOX_NB_DEFER_DW_MIN_N", 24)
# The same threshold for lam integrated by DOP853 (the cpu's default, adjoint_integrator "auto"): its steps are about
# 2.6 times longer, so fewer of its nodes share a forward step and the grouping saves less.  Measured on the 2-core
# AMD EPYC dev machine (bench/RESULTS.md, eighth session; in-process interleaved, M = 100), buffered against direct:
# n = 13 +5 %, 19 +8 %, 24 +8 %, 32 +4 %, 40 +2 %, 48 0 %, 63 -5 %, 99 -6 % (Tsit5 on the same machine: 19 +2 %,
# 24 -1 %, 32 -5 %, 40 -7 %, 48 -8 %).  CELLBOX_NB_DEFER_DW_MIN_N sets both.
DEFER_DW_MIN_N_DOP853 = _env_int("CELLBOX_NB_DEFER_DW_MIN_N", 48)
LOCKSTEP_MIN_N = _env_int("CELLBOX_NB_LOCKSTEP_MIN_N", 64)  # from this n on, conditions step in blocks
# conditions per lockstep block; 0: by n, 16 below n = 256, 4 up to n = 448, 32 from there.  Measured on the 2-core
# dev machine (2 MiB L2 per core) with `python bench/lockstep_block.py` (bench/RESULTS.md, "Lockstep block size",
# raw results/lockstep_block_run2.jsonl), loss+grad: n = 99 0.0338 s with 16, 0.0358 s with 8; n = 200 0.0936 s with
# 16, 0.0951 s with 8; n = 300 0.201 s with 4, 0.204 s with 8; n = 400 0.238 s with 4, 0.261 s with 32; n = 500
# 0.365 s with 32, 0.423 s with 16.  (8 below n = 256 until the lockstep kernels stopped paying reference counting
# per condition, which made the per-condition share of a stage smaller.)  While W fits in a core's cache the
# products gain little from more rows and smaller blocks keep the block's dense store closer; once it does not, each
# product reuses W for more conditions.  Fewer, larger blocks also mean fewer chunks to share between threads: on
# many-core nodes a smaller CELLBOX_NB_LOCKSTEP_BLOCK gives more.  Other machines may prefer other sizes.
LOCKSTEP_SMALL_BLOCK_N = 256
LOCKSTEP_BIG_BLOCK_N = 448
LOCKSTEP_BLOCK = _env_int("CELLBOX_NB_LOCKSTEP_BLOCK", 0)
DEFER_DW_ROWS = 384  # dL/dW terms buffered per chunk before one product (at least adjoint.QROWS_STEP are used)
CUDA_TPB = 128  # threads per block of the elementwise CUDA kernels
CUDA_TILE = 16  # tile edge of the shared-memory matrix-product kernel (TILE x TILE threads per block)
