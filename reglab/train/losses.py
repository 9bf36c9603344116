"""Losses (TECHNIQUES.md section 12), looked up by the recipe's ``training.loss``.

- ``cross_entropy``: classification, ``−Σ_k y_k log softmax(z)_k`` averaged over the batch;
  ``y`` is a class index or a soft target (label smoothing, Mixup, CutMix).
- ``mse`` (L2): ``mean((ŷ − y)²)`` over samples and target columns. Its minimizer over a
  constant prediction is the mean, which one outlier drags arbitrarily far.
- ``mae`` (L1): ``mean(|ŷ − y|)``. Its constant minimizer is the median: robust to outliers.

These are PyTorch's functional losses (``F.cross_entropy``, ``F.mse_loss``, ``F.l1_loss``);
reglab adds the registry and the chance level the diagnosis compares the training loss with.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from reglab.errors import ReglabError
from reglab.registry import Registry

LOSSES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry(
    "loss", {"cross_entropy": F.cross_entropy, "mse": F.mse_loss, "mae": F.l1_loss}
)


def chance_loss(loss: str, y: torch.Tensor, num_classes: int = 0) -> float:
    """The loss of the best prediction that ignores the input: ``ln K`` for cross-entropy
    (uniform logits), the targets' variance for ``mse`` (predicting the mean), their mean
    absolute deviation from the median for ``mae`` (predicting the median); per column, averaged."""
    if loss == "cross_entropy":
        return math.log(num_classes)
    y = y.double().reshape(len(y), -1)
    if loss == "mse":
        return float(((y - y.mean(0)) ** 2).mean())
    if loss == "mae":
        return float((y - y.quantile(0.5, dim=0)).abs().mean())  # any median minimizes; the midpoint is one
    raise ReglabError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
