"""The only place that decides how functions are compiled.

* No ``fastmath``: LLVM's ``nnan``/``ninf`` flags silently disable the NaN/Inf checks the step control relies on,
  and ``reassoc`` would make results depend on SIMD width.
* ``cache=True`` on every kernel (set ``CELLBOX_NB_CACHE=0`` to turn it off) so the second start of
  ``cellbox-nb`` does not recompile; put the cache on node-local scratch with ``NUMBA_CACHE_DIR`` on clusters.
* Numba checks a cached kernel against the contents of its own source file only, and a kernel's machine code
  includes the small kernels it calls from other files: after an edit to, say, rhs.py alone (a ``git pull`` in an
  editable install), forward.py's cached kernels would still run the old right-hand side.
  :func:`refresh_stale_cache` guards against that: it hashes every source file of the package and, when the hash
  differs from the one recorded with the cache, deletes the package's cached kernels, so that Numba compiles each
  once more.
"""

import hashlib
import os

from numba import njit

CACHE = os.environ.get("CELLBOX_NB_CACHE", "1") != "0"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _package_sources():
    out = []
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        out.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))
    return out


def _marker_path():
    """Where the sources' hash is recorded: next to the default cache (the package's __pycache__), or in
    NUMBA_CACHE_DIR under a name unique to this copy of the package (several versions may share that directory)."""
    cache_dir = os.environ.get("NUMBA_CACHE_DIR", "")
    if cache_dir:
        tag = hashlib.sha1(PACKAGE_DIR.encode()).hexdigest()[:12]
        return os.path.join(cache_dir, f"cellbox_nb-{tag}.sources")
    return os.path.join(PACKAGE_DIR, "__pycache__", "cellbox_nb.sources")


def _cache_dir(path):
    """The directory where Numba caches the kernels of source file ``path`` (as Numba chooses it)."""
    try:
        from numba.core.caching import CacheImpl

        def probe():
            pass

        for cls in CacheImpl._locator_classes:
            locator = cls.from_function(probe, path)
            if locator is not None:
                return locator.get_cache_path()
    except Exception:  # another Numba release: fall back to the in-tree default
        pass
    return os.path.join(os.path.dirname(path), "__pycache__")


def refresh_stale_cache():
    """If the package's sources changed since the cache was written (or no hash was recorded), delete the package's
    cached kernels (index and data files), so that Numba compiles each kernel again on its next call, then record
    the new hash.  Returns True when it deleted.  Does nothing with CELLBOX_NB_CACHE=0, and nothing it cannot
    write (a read-only installation, which an upgrade rewrites whole anyway)."""
    if not CACHE:
        return False
    sources = _package_sources()
    digest = hashlib.sha256()
    for path in sources:
        with open(path, "rb") as fh:
            digest.update(os.path.relpath(path, PACKAGE_DIR).encode() + b"\0" + fh.read() + b"\0")
    current = digest.hexdigest()
    marker = _marker_path()
    try:
        with open(marker) as fh:
            if fh.read().strip() == current:
                return False
    except OSError:
        pass
    try:
        for path in sources:
            stem = os.path.splitext(os.path.basename(path))[0] + "."
            cache_dir = _cache_dir(path)
            if not os.path.isdir(cache_dir):
                continue
            for name in os.listdir(cache_dir):
                if name.startswith(stem) and name.endswith((".nbi", ".nbc")):
                    os.remove(os.path.join(cache_dir, name))
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        tmp = f"{marker}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(current + "\n")
        os.replace(tmp, marker)
    except OSError:
        return False
    return True


refresh_stale_cache()


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
