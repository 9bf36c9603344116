"""Checkpoints: written atomically, loaded with ``weights_only=True``.

``save`` writes through ``reglab._files.atomic_write`` (a temporary file in the same folder,
flushed to disk, renamed over the old checkpoint), so a kill at any moment leaves either the old
or the new checkpoint whole, never a torn one. ``load`` refuses pickled code: only tensors and
plain containers come back.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reglab._checks import check_int
from reglab._files import atomic_write
from reglab.errors import ReglabError
from reglab.train.callbacks import Callback

if TYPE_CHECKING:
    from reglab.train.loop import Trainer


def save(obj: Any, path: str | Path) -> None:
    """Atomically write ``obj`` (tensors, dicts, lists, numbers, strings) to ``path``.

    The checkpoint is serialized in memory first, then written by ``atomic_write``, so that a
    full disk is a ``WriteError`` naming the file (torch's own writer reports it as an
    "enforce fail" deep in its zip writer)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getbuffer())


class DamagedCheckpointError(ReglabError):
    """A checkpoint file that cannot be read back: truncated, overwritten, or not a checkpoint."""


class UnsafeCheckpointError(ReglabError, pickle.UnpicklingError):
    """A whole checkpoint file that holds pickled code or objects: refused, never executed."""


def _is_zip(path: str | Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


def load(path: str | Path, map_location: str | torch.device | None = "cpu") -> Any:
    """Load a checkpoint written by ``save``, with ``weights_only=True``; a file that is not a
    whole checkpoint raises ``DamagedCheckpointError``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # could not be opened at all (permissions, ...): the machine's error, as it is
        if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e) and _is_zip(path):
            raise UnsafeCheckpointError(
                f"{path} holds pickled objects other than tensors and plain containers; reglab loads "
                "checkpoints with weights_only=True and refuses it"
            ) from e
        raise DamagedCheckpointError(
            f"{path} is damaged: it is not a whole checkpoint (truncated, overwritten, or not written by reglab)"
        ) from e


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
