"""Checkpoints: written atomically, loaded with ``weights_only=True``.

``save`` writes to a temporary file in the same folder, flushes it to disk and renames it over
the old checkpoint (``os.replace`` is atomic), so a kill at any moment leaves either the old or
the new checkpoint whole, never a torn one. ``load`` refuses pickled code: only tensors and
plain containers come back.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reglab.train.callbacks import Callback

if TYPE_CHECKING:
    from reglab.train.loop import Trainer


def save(obj: Any, path: str | Path) -> None:
    """Atomically write ``obj`` (tensors, dicts, lists, numbers, strings) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load(path: str | Path, map_location: str | torch.device | None = "cpu") -> Any:
    """Load a checkpoint written by ``save``, with ``weights_only=True``."""
    return torch.load(path, map_location=map_location, weights_only=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer(Callback):
    """Saves the trainer's whole state at the end of every ``every``-th epoch (put it last in
    the list); a resumed run repeats at most ``every - 1`` epochs, exactly."""

    records = ()

    def __init__(self, path: str | Path, extra: dict[str, Any] | None = None, every: int = 1) -> None:
        from reglab._checks import check_int

        self.path = Path(path)
        self.extra = extra or {}
        self.every = check_int("checkpoint every", every, low=1)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.epoch % self.every == 0:
            save({**self.extra, "trainer": trainer.state_dict(), "finished": False}, self.path)
