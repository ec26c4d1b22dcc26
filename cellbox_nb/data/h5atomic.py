"""Atomic HDF5 writes: build the file under a temporary name in the destination folder, fsync, rename.

A reader (or a process killed mid-write) sees either the previous complete file or the new complete file,
never a half-written one; on any failure the temporary file is removed and the old file is untouched.
"""

import contextlib
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
