"""The only place that decides how functions are compiled.

* No ``fastmath``: LLVM's ``nnan``/``ninf`` flags silently disable the NaN/Inf checks the step control relies on,
  and ``reassoc`` would make results depend on SIMD width.
* ``cache=True`` on every kernel (set ``CELLBOX_NB_CACHE=0`` to turn it off) so the second start of
  ``cellbox-nb`` does not recompile; put the cache on node-local scratch with ``NUMBA_CACHE_DIR`` on clusters.
"""

import os

from numba import njit

CACHE = os.environ.get("CELLBOX_NB_CACHE", "1") != "0"


def kernel(fn):
    """Compile a serial kernel (arrays and scalars in, arrays and status codes out)."""
    return njit(cache=CACHE, fastmath=False, nogil=True, error_model="numpy")(fn)


def driver(fn):
    """Compile a parallel driver (``prange`` over conditions)."""
    return njit(cache=CACHE, fastmath=False, parallel=True, nogil=True, error_model="numpy")(fn)
