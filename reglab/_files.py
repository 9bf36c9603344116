"""Writing files so that nothing is ever half-written.

Every file reglab writes (recipes, run histories and summaries, checkpoints, figures, reports,
the data cache) goes through ``atomic_write``: the content goes to a temporary file in the same
folder, is flushed to disk, and replaces the target with ``os.replace`` (atomic on POSIX and
Windows); the folder is then flushed too, so that the rename itself survives a power cut. A
reader, or a run killed at any moment, sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(
    path: str | Path, content: str | bytes | Callable[[IO[bytes]], Any], *, encoding: str = "utf-8"
) -> Path:
    """Write ``content`` to ``path`` atomically (folders made as needed); returns the path.

    ``content`` is text (written with ``encoding``), bytes, or a function that writes into the
    binary file it is given (``lambda f: torch.save(obj, f)``, ``lambda f: fig.savefig(f)``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
