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


def leaf(fn):
    """Compile a kernel that neither allocates nor returns arrays (it reads and writes the caller's), without
    Numba's reference counting (``_nrt=False``).

    With reference counting on, every call that passes arrays (or row views of them) increments and decrements
    their reference counts with atomic operations; at small n those cost more than the arithmetic (n = 7:
    loss+grad 3.4 ms with them, 2.1 ms without; bench/RESULTS.md), and two threads doing it on the same shared
    arrays (W, alpha) contend for one cache line.  A leaf that tried to allocate would fail to compile, not misbehave.
    """
    return njit(cache=CACHE, fastmath=False, nogil=True, error_model="numpy", _nrt=False)(fn)


def driver(fn):
    """Compile a parallel driver (``prange`` over conditions)."""
    return njit(cache=CACHE, fastmath=False, parallel=True, nogil=True, error_model="numpy")(fn)
