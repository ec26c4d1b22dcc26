"""Atomic HDF5 writes: build the file under a temporary name in the destination folder, fsync, rename.

A reader (or a process killed mid-write) sees either the previous complete file or the new complete file,
never a half-written one; on any failure the temporary file is removed and the old file is untouched.
"""

import contextlib
import glob
import os
import tempfile


@contextlib.contextmanager
def atomic_h5_write(path):
    """Context manager yielding an open, writable ``h5py.File`` that replaces ``path`` on success."""
    import h5py

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temps(path):
    """Remove temporary files that an interrupted :func:`atomic_h5_write` of ``path`` left behind.

    A process killed by SIGKILL (or a power loss) while it rewrites ``path`` cannot delete its temporary
    ``.<name>.XXXXXXXX.tmp``; the file at ``path`` is still the previous complete version.  Call this only where
    no other process writes ``path`` (a results file has one writer).  Returns the removed paths.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    pattern = os.path.join(glob.escape(folder), f".{glob.escape(os.path.basename(path))}.*.tmp")
    removed = []
    for tmp in glob.glob(pattern):
        try:
            os.remove(tmp)
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


def open_for_reading(path, label):
    """Open an HDF5 file read-only, or raise InputDataError '<label> '<path>': <problem>' (one line).

    Returns ``(file, fail)`` where ``fail(problem)`` raises the same kind of one-line error for later checks.
    """
    import h5py

    from ..errors import InputDataError

    path = os.fspath(path)

    def fail(problem):
        raise InputDataError(f"{label} '{path}': {problem}")

    if not os.path.isfile(path):
        fail("not found")
    if not h5py.is_hdf5(path):
        fail("not an HDF5 file")
    try:
        return h5py.File(path, "r"), fail
    except OSError as exc:
        fail(f"cannot be opened as HDF5 ({' '.join(str(exc).split())})")
