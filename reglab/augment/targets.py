"""Targets: one-hot, label smoothing, and the soft targets mixing produces (TECHNIQUES.md 7).

Training with soft targets uses cross-entropy against a distribution,
``CE(z, y) = −Σ_k y_k log softmax(z)_k``, which ``torch.nn.functional.cross_entropy``
computes when given class probabilities; reglab's training loop passes them through as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reglab._checks import check_float, check_int, check_tensor
from reglab.errors import ReglabError, ReglabTypeError


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot targets ``(N, K)`` of class indices ``0..K−1`` (any integer dtype); soft
    targets ``(N, K)`` pass through unchanged."""
    check_int("num_classes", num_classes, low=1)
    check_tensor("one_hot", "labels", y)
    if y.ndim == 2:
        if y.shape[1] != num_classes:
            raise ReglabError(f"soft targets must have {num_classes} columns (num_classes), got shape {tuple(y.shape)}")
        return y
    if y.ndim != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ReglabTypeError(
            f"labels must be class indices (integers, shape (N,)) or soft targets (N, K), got {y.dtype} of shape "
            f"{tuple(y.shape)}"
        )
    try:
        return F.one_hot(y.long(), num_classes).float()
    except RuntimeError:  # torch checks the range on the CPU (on a GPU, the data checks did it before training)
        bad = y[(y < 0) | (y >= num_classes)]
        raise ReglabError(
            f"labels must be in 0..{num_classes - 1} (num_classes = {num_classes}), got {int(bad[0])}"
        ) from None


def smooth_labels(y: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
    """Label smoothing: ``y = (1 − ε) onehot + ε / K`` (soft targets are smoothed the same way)."""
    check_float("epsilon", epsilon, low=0, high=1, high_open=True)
    return one_hot(y, num_classes) * (1 - epsilon) + epsilon / num_classes


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``−Σ_k y_k log softmax(z)_k`` over the batch; ``target`` may be class indices."""
    if target.ndim != 1 and target.shape != logits.shape:
        raise ReglabError(f"soft targets must have the logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}")
    return F.cross_entropy(logits, target)


class LabelSmoothing:
    """Batch transform ``(x, y, g) -> (x, smoothed y)`` for the training loop."""

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        self.num_classes = check_int("num_classes", num_classes, low=2)
        self.epsilon = check_float("label_smoothing", epsilon, low=0, high=1, high_open=True)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        return x, smooth_labels(y, self.num_classes, self.epsilon)
