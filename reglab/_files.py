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
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from reglab.errors import WriteError

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
