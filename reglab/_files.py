"""Writing files so that nothing is ever half-written.

Every file reglab writes (recipes, run histories and summaries, checkpoints, figures, reports,
the data cache) goes through ``atomic_write``: the content goes to a temporary file in the same
folder, is flushed to disk, and replaces the target with ``os.replace`` (atomic on POSIX and
Windows); the folder is then flushed too, so that the rename itself survives a power cut. A
reader, or a run killed at any moment, sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from reglab.errors import FolderBusyError, WriteError

# What the machine, not reglab, refused: each becomes a one-line ``WriteError`` with the fix.
_WHY = {
    errno.ENOSPC: "the disk is full: free some space, or choose another --out",
    errno.EDQUOT: "the disk quota is used up: free some space, or choose another --out",
    errno.EROFS: "the file system is read-only: choose another --out",
    errno.EACCES: "permission denied: choose a folder you can write, with --out",
    errno.EPERM: "permission denied: choose a folder you can write, with --out",
}


_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it), then put back
os.umask(_UMASK)


def cannot_write(path: str | Path, e: OSError) -> WriteError:
    """The ``WriteError`` for an ``OSError`` the machine raised on writing ``path``."""
    why = _WHY.get(e.errno, e.strerror or str(e))
    return WriteError(f"cannot write {path}: {why} (files written before are intact)")


def make_folder(path: str | Path) -> Path:
    """``mkdir -p path``; a full disk or a read-only folder is a ``WriteError``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in _WHY:
            raise cannot_write(path, e) from None
        raise
    return path


def atomic_write(
    path: str | Path, content: str | bytes | Callable[[IO[bytes]], Any], *, encoding: str = "utf-8"
) -> Path:
    """Write ``content`` to ``path`` atomically (folders made as needed); returns the path.

    ``content`` is text (written with ``encoding``), bytes, or a function that writes into the
    binary file it is given (``lambda f: fig.savefig(f)``). A full disk, a read-only file system
    or a folder without write permission raises ``reglab.errors.WriteError`` naming the file;
    the previous file, if there was one, is left as it was.
    """
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if e.errno in _WHY:
            raise cannot_write(path, e) from None
        raise
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files: give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, str):
                f.write(content.encode(encoding))
            elif isinstance(content, (bytes, bytearray, memoryview)):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in _WHY:  # the old file, if any, is untouched
            raise cannot_write(path, e) from None
        raise
    fsync_folder(path.parent)
    return path


def fsync_folder(folder: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse fsync on folders
        pass
    finally:
        os.close(fd)


LOCK = ".reglab.lock"  # in a folder reglab writes into: who holds it now


@contextmanager
def folder_lock(folder: str | Path, wait: float = 0.0) -> Iterator[None]:
    """Hold ``folder``'s lock for the block: an exclusive ``flock`` on ``folder/.reglab.lock``,
    which the system releases when the holder exits, however it exits (``kill -9`` too). Taken
    by another process, it is waited for up to ``wait`` seconds, then refused with a
    ``FolderBusyError`` saying who holds it. Where ``flock`` does not exist (Windows), no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    import socket
    import time

    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    except OSError as e:
        if e.errno in _WHY:
            raise cannot_write(path, e) from None
        raise
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "a process"
                    raise FolderBusyError(
                        f"{folder} is in use by another reglab ({holder}): wait for it to finish, or choose another "
                        "--out"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
