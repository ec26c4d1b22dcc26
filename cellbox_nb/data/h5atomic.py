"""Atomic writes: build the file (HDF5 in memory), write it under a temporary name in the destination folder,
fsync, rename.

A reader (or a process killed mid-write) sees either the previous complete file or the new complete file,
never a half-written one; on any failure the temporary file is removed and the old file is untouched.
"""

import contextlib
import glob
import io
import os
import tempfile
import time
import warnings


def _creation_mode():
    """The mode a newly created file gets under this process's umask (0o666 & ~umask).  The umask is read from
    /proc where it can be (setting it to read it back changes it for every thread for a moment)."""
    try:
        with io.open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temp_beside(path):
    """A new empty temporary file in ``path``'s folder, named ``.<name>.XXXXXXXX.tmp``, with the permissions of a
    plain ``open`` under the umask (mkstemp's own 0600 would make every result private to its owner, which breaks
    group-shared cluster folders).  Returns its path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:  # named by the path the caller asked for, not the temporary's
        raise OSError(exc.errno, exc.strerror or str(exc), path) from None
    try:
        os.fchmod(fd, _creation_mode())
    except OSError:  # a file system without modes (vfat, some network mounts): keep mkstemp's
        pass
    finally:
        os.close(fd)
    return tmp


class FileSet:
    """Files written together (an export, a report): each under a temporary name beside its final path
    (:meth:`reserve`), all renamed into place by :func:`all_or_none` only once every one is complete."""

    def __init__(self):
        self.finals, self.targets, self.temps, self.stale = [], [], [], []  # finals: as given; targets: links followed

    def discard(self, path):
        """Remove ``path`` (if it is there) when the others are renamed into place: a file an earlier version of
        the set had and this one has not.  A symbolic link is removed itself, not the file it points to."""
        self.stale.append(os.fspath(path))

    def reserve(self, path):
        """The temporary path to write ``path``'s content to.  A symbolic link is followed: its target is
        replaced and the link kept, as a plain ``open(path, "w")`` would do."""
        self.finals.append(os.fspath(path))
        self.targets.append(resolve_link(path))
        try:
            self.temps.append(temp_beside(self.targets[-1]))
        except OSError as exc:  # named as the caller gave it
            raise OSError(exc.errno, exc.strerror, self.finals[-1]) from None
        return self.temps[-1]


def resolve_link(path):
    """``path``, or where it leads when it is a symbolic link (the file a write through the link changes)."""
    path = os.fspath(path)
    return os.path.realpath(path) if os.path.islink(path) else path


@contextlib.contextmanager
def all_or_none():
    """Yield a :class:`FileSet`; when the body ends without an error, replace every final path by its temporary
    file (refusing, ConfigError, a final path that is a folder, before any is replaced); the temporaries are
    removed in any case, so a failure leaves the folder as it was."""
    from ..errors import ConfigError

    files = FileSet()
    try:
        yield files
        for final in files.finals:
            if os.path.isdir(final):
                raise ConfigError(f"cannot write '{final}': it is a folder")
        for tmp, target in zip(files.temps, files.targets):
            os.replace(tmp, target)
        for stale in files.stale:  # (the new files are in place: a file that cannot go is a warning, not an error)
            if os.path.islink(stale) or os.path.isfile(stale):
                try:
                    os.remove(stale)
                except OSError as exc:
                    warnings.warn(f"could not remove '{stale}' of an earlier version ({exc.strerror}); it does not "
                                  f"belong to the files just written", RuntimeWarning, stacklevel=3)
    except OSError as exc:  # a temporary could not be written or renamed: name the file it was for
        where = exc.filename if exc.filename and not str(exc.filename).endswith(".tmp") else \
            (files.finals[-1] if files.finals else None)
        raise OSError(exc.errno, exc.strerror or str(exc), where) from None
    finally:
        for tmp in files.temps:
            if os.path.exists(tmp):
                os.remove(tmp)


@contextlib.contextmanager
def atomic_h5_write(path):
    """Context manager yielding an open, writable ``h5py.File`` that replaces ``path`` on success.

    The file is built in memory and written out with plain file I/O: HDF5 does not survive a write error in its
    own I/O (a full disk made ``File.close`` crash the process with a segmentation fault), while a failed
    ``write`` here is an OSError naming ``path`` (exit code 2 on the command line), the previous file untouched.
    """
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        yield f
    write_bytes_atomically(path, buf.getbuffer())


def write_bytes_atomically(path, data):
    """Replace ``path`` by a file holding ``data`` (bytes or str, as UTF-8): written beside it under a temporary
    name, fsynced, renamed into place; on an error the temporary is removed and OSError names ``path``."""
    with all_or_none() as files:
        with open(files.reserve(path), "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())


@contextlib.contextmanager
def writer_lock(path):
    """Hold an advisory lock on ``path`` for the ``with`` body: ``flock`` on ``.<name>.lock`` in its folder, which
    holds the writer's pid.  A second process asking for the same path gets OutputInUse (a ConfigError, exit code
    2) instead of replacing the first one's file at its next checkpoint or deleting its temporary files.  The lock
    is released by the kernel when the process dies (a SIGKILL leaves the lock file, not a lock); the file is
    removed on a normal exit.  Where the file system has no locks (some network file systems) the body runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    from ..errors import OutputInUse

    path = os.fspath(path)  # (named as given in messages)
    target = resolve_link(path)  # a link and its target are one file: one lock
    lock_path = os.path.join(os.path.dirname(os.path.abspath(target)), f".{os.path.basename(target)}.lock")
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, _creation_mode())
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), path) from None
        try:
            _flock_exclusive(fcntl, fd)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputInUse(f"output file '{path}' is being written by another cellbox-nb process (pid {holder}); "
                              f"wait for it to end or write elsewhere") from None
        except OSError:  # no locks on this file system
            os.close(fd)
            yield
            return
        try:  # the holder before us may have removed the lock file after we opened it: lock the current one
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        try:
            os.remove(lock_path)  # still holding the lock, so no one else holds this file
        except FileNotFoundError:
            pass
        os.close(fd)


def _flock_exclusive(fcntl, fd, tries=20, wait_s=0.005):
    """flock(LOCK_EX | LOCK_NB), tried again for about 0.1 s: a reader's brief probe (:func:`is_being_written`)
    is not a writer.  BlockingIOError when the lock stays held."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == tries - 1:
                raise
            time.sleep(wait_s)


def is_being_written(path):
    """True when a process holds the writer lock of ``path`` (:func:`writer_lock`) right now, False when none
    does, None when this cannot be told (a file system without locks)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return False
    target = resolve_link(path)
    lock_path = os.path.join(os.path.dirname(os.path.abspath(target)), f".{os.path.basename(target)}.lock")
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:  # no lock file: no writer (a writer removes it when it ends, a killed one leaves it)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # (releases a lock taken here)
    return False


def remove_stale_temps(path):
    """Remove temporary files that an interrupted :func:`atomic_h5_write` of ``path`` left behind.

    A process killed by SIGKILL (or a power loss) while it rewrites ``path`` cannot delete its temporary
    ``.<name>.XXXXXXXX.tmp``; the file at ``path`` is still the previous complete version.  Call this only where
    no other process writes ``path`` (a results file has one writer).  Returns the removed paths.
    """
    path = resolve_link(path)  # the temporaries sit beside the file a link points to
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
