"""Checkpoints: written atomically, loaded with ``weights_only=True``.

``save`` writes through ``reglab._files.atomic_write`` (a temporary file in the same folder,
flushed to disk, renamed over the old checkpoint), so a kill at any moment leaves either the old
or the new checkpoint whole, never a torn one. ``load`` refuses pickled code: only tensors and
plain containers come back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reglab._checks import check_int
from reglab._files import atomic_write
from reglab.train.callbacks import Callback

if TYPE_CHECKING:
    from reglab.train.loop import Trainer


def save(obj: Any, path: str | Path) -> None:
    """Atomically write ``obj`` (tensors, dicts, lists, numbers, strings) to ``path``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load(path: str | Path, map_location: str | torch.device | None = "cpu") -> Any:
    """Load a checkpoint written by ``save``, with ``weights_only=True``."""
    return torch.load(path, map_location=map_location, weights_only=True)


class Checkpointer(Callback):
    """Saves the trainer's whole state at the end of every ``every``-th epoch (put it last in
    the list); a resumed run repeats at most ``every - 1`` epochs, exactly."""

    records = ()

    def __init__(self, path: str | Path, extra: dict[str, Any] | None = None, every: int = 1) -> None:
        self.path = Path(path)
        self.extra = extra or {}
        self.every = check_int("checkpoint every", every, low=1)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.epoch % self.every == 0:
            save({**self.extra, "trainer": trainer.state_dict(), "finished": False}, self.path)
