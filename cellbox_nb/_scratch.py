"""Scratch arrays of the loss-and-gradient drivers, kept between calls.

Each call of ``loss_and_grad`` on the cpu needs a dense-store scratch per parallel worker (about 9 MB a worker at
n = 99 with lockstep blocks of 16).  Fresh arrays that large come from malloc as fresh pages from the system each
call, and touching them cost page faults worth about 8 % of a loss-and-gradient call at n = 99 on two threads
(bench/RESULTS.md, fourteenth session).  The pool lends each call a set of arrays and takes it back afterwards,
keeping at most ``config.SCRATCH_KEEP_BYTES`` in all (least recently returned sets go first; a set larger than the
limit is never kept).  A set is lent to one call at a time (calls from several Python threads each get their own).
The kernels never read scratch before writing it, so what a previous call left there cannot change a result
(tests/test_scratch.py fills the pool with NaN to check).
"""

import collections
import contextlib
import threading

import numpy as np


class ScratchPool:
    def __init__(self, keep_bytes):
        self.keep_bytes = keep_bytes  # a function: the limit in bytes, read each time a set comes back
        self._lock = threading.Lock()
        self._free = collections.OrderedDict()  # shapes -> list of array tuples, least recently returned first
        self._bytes = 0

    @property
    def held_bytes(self):
        """Bytes of the sets kept for later calls."""
        return self._bytes

    def clear(self):
        """Drop every kept set (their memory goes back once nothing else refers to it)."""
        with self._lock:
            self._free.clear()
            self._bytes = 0

    def sets(self):
        """The kept sets (for tests)."""
        with self._lock:
            return [arrays for sets in self._free.values() for arrays in sets]

    @contextlib.contextmanager
    def borrow(self, shapes):
        """A tuple of float64 arrays of the given shapes, contents undefined, for the duration of the block."""
        shapes = tuple(tuple(int(v) for v in shape) for shape in shapes)
        arrays = None
        with self._lock:
            sets = self._free.get(shapes)
            if sets:
                arrays = sets.pop()
                self._bytes -= _nbytes(arrays)
                if not sets:
                    del self._free[shapes]
        if arrays is None:
            arrays = tuple(np.empty(shape) for shape in shapes)
        try:
            yield arrays
        finally:
            self._give_back(shapes, arrays)

    def _give_back(self, shapes, arrays):
        size = _nbytes(arrays)
        limit = self.keep_bytes()
        if size > limit:
            return
        with self._lock:
            self._free.setdefault(shapes, []).append(arrays)
            self._free.move_to_end(shapes)
            self._bytes += size
            while self._bytes > limit:
                oldest = next(iter(self._free))
                sets = self._free[oldest]
                self._bytes -= _nbytes(sets.pop(0))
                if not sets:
                    del self._free[oldest]


def _nbytes(arrays):
    return sum(a.nbytes for a in arrays)
