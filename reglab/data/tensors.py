"""``Data``: a data set's train / validation / test tensors, checked before the first step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reglab._checks import check_int
from reglab.errors import ReglabError, ReglabTypeError


@dataclass(frozen=True)
class Data:
    """Train / validation / test tensors of one data set (inputs float32; labels int64, or
    regression targets float32 ``(N, D)``)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int  # K; 0 for regression data
    classes: tuple[str, ...] = ()  # the class names, when the data named them (label i is classes[i])

    def __post_init__(self) -> None:
        """The checks ``load_data`` makes, for Data made by hand too: before any training step.
        Integer labels of another dtype (int32, uint8, ...) become int64, as the losses need."""
        for field in ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test"):
            value = getattr(self, field)
            if not isinstance(value, torch.Tensor):
                hint = (
                    "; torch.as_tensor converts a NumPy array (inputs as float32: dtype=torch.float32)"
                    if type(value).__module__ == "numpy"
                    else ""
                )
                raise ReglabTypeError(f"Data: {field} must be a torch.Tensor, got {type(value).__name__}{hint}")
            if field.startswith("y") and not value.is_floating_point() and value.dtype not in (torch.int64, torch.bool):
                object.__setattr__(self, field, value.long())
        parts = {
            "training": (self.x_train, self.y_train),
            "validation": (self.x_valid, self.y_valid),
            "test": (self.x_test, self.y_test),
        }
        for where, (x, y) in parts.items():
            check_arrays(x, y, f"{where} data")
            if x.shape[1:] != self.x_train.shape[1:]:
                raise ReglabError(
                    f"{where} inputs have shape {tuple(x.shape[1:])} per sample, training inputs "
                    f"{tuple(self.x_train.shape[1:])}"
                )
            if y.is_floating_point() != self.regression or y.shape[1:] != self.y_train.shape[1:]:
                kind = "targets" if y.is_floating_point() else "labels"
                base = "targets" if self.regression else "labels"
                raise ReglabError(
                    f"{where} {kind} are {y.dtype} of shape {tuple(y.shape[1:])} per sample, "
                    f"training {base} {self.y_train.dtype} of shape {tuple(self.y_train.shape[1:])}"
                )
        if self.regression:
            return
        check_int("num_classes", self.num_classes, low=2)
        for where, (_, y) in parts.items():
            if int(y.max()) >= self.num_classes:
                raise ReglabError(
                    f"{where} data: labels must be in 0..{self.num_classes - 1} (num_classes = {self.num_classes}), "
                    f"found {int(y.max())}"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def regression(self) -> bool:
        return self.y_train.is_floating_point()

    @property
    def num_outputs(self) -> int:
        """The model's output size: K logits, or the D regression targets."""
        return self.y_train.shape[1] if self.regression else self.num_classes

    def to(self, device: torch.device | str) -> Data:
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return Data(name=self.name, num_classes=self.num_classes, classes=self.classes, **moved)


def check_arrays(x: torch.Tensor, y: torch.Tensor, where: str) -> None:
    """Raise ``ValueError`` for data that would break or silently spoil training: class
    labels ``(N,)`` (integers) or regression targets ``(N, D)`` (floating point)."""
    if x.ndim < 2:
        raise ReglabError(
            f"{where}: inputs must have shape (N, ...) with at least one feature axis, got {tuple(x.shape)}"
        )
    regression = torch.is_floating_point(y)
    if regression and y.ndim != 2:
        raise ReglabError(
            f"{where}: labels must be integers 0..K-1 of shape (N,), or regression targets of shape (N, D); "
            f"got {y.dtype} of shape {tuple(y.shape)}"
        )
    if not regression and y.ndim != 1:
        raise ReglabError(f"{where}: labels must have shape (N,), got {tuple(y.shape)}")
    if len(x) != len(y):
        raise ReglabError(f"{where}: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise ReglabError(f"{where}: no samples")
    if not torch.is_floating_point(x):
        raise ReglabError(f"{where}: inputs must be floating point, got {x.dtype}")
    bad = ~torch.isfinite(x)
    if bad.any():
        row = int(bad.reshape(len(x), -1).any(1).nonzero()[0])
        raise ReglabError(f"{where}: {int(bad.sum())} NaN/Inf input values (first in sample {row})")
    if regression:
        bad = ~torch.isfinite(y)
        if bad.any():
            raise ReglabError(
                f"{where}: {int(bad.sum())} NaN/Inf targets (first in sample {int(bad.any(1).nonzero()[0])})"
            )
        return
    if y.dtype == torch.bool:
        raise ReglabError(f"{where}: labels must be integers 0..K-1, got dtype {y.dtype}")
    if int(y.min()) < 0:
        raise ReglabError(f"{where}: labels must be in 0..K-1, found {int(y.min())}")


def as_tensors(x: np.ndarray, y: np.ndarray, regression: bool = False):
    """float32 inputs; int64 labels, or float32 targets as (N, D)."""
    if regression:
        y = np.array(y, dtype=np.float32)
        return torch.from_numpy(np.array(x, dtype=np.float32)), torch.from_numpy(y.reshape(-1, 1) if y.ndim == 1 else y)
    return torch.from_numpy(np.array(x, dtype=np.float32)), torch.from_numpy(np.array(y, dtype=np.int64))
