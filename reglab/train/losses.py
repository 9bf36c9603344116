"""Losses (TECHNIQUES.md section 12), looked up by the recipe's ``training.loss``.

- ``cross_entropy``: classification, ``−Σ_k y_k log softmax(z)_k`` averaged over the batch;
  ``y`` is a class index or a soft target (label smoothing, Mixup, CutMix).
- ``mse`` (L2): ``mean((ŷ − y)²)`` over samples and target columns. Its minimizer over a
  constant prediction is the mean, which one outlier drags arbitrarily far.
- ``mae`` (L1): ``mean(|ŷ − y|)``. Its constant minimizer is the median: robust to outliers.
- ``huber``: ``mean(h(ŷ − y))`` with ``h(r) = r²/2`` for ``|r| ≤ δ`` and ``δ(|r| − δ/2)`` beyond,
  ``δ = 1`` (``torch.nn.HuberLoss``): squared near the fit, absolute in the tails.

These are PyTorch's functional losses (``F.cross_entropy``, ``F.mse_loss``, ``F.l1_loss``,
``F.huber_loss``);
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
    "loss", {"cross_entropy": F.cross_entropy, "mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}
)


def chance_loss(loss: str, y: torch.Tensor, num_classes: int = 0) -> float:
    """The loss of the best prediction that ignores the input: ``ln K`` for cross-entropy
    (uniform logits), the targets' variance for ``mse`` (predicting the mean), their mean
    absolute deviation from the median for ``mae`` (predicting the median), the Huber loss of the
    best constant for ``huber`` (a convex problem in one number per column); per column, averaged."""
    if loss == "cross_entropy":
        return math.log(num_classes)
    y = y.double().reshape(len(y), -1)
    if loss == "mse":
        return float(((y - y.mean(0)) ** 2).mean())
    if loss == "mae":
        return float((y - y.quantile(0.5, dim=0)).abs().mean())  # any median minimizes; the midpoint is one
    if loss == "huber":
        from scipy.optimize import minimize_scalar

        def huber(c: float, col: torch.Tensor) -> float:
            r = (col - c).abs()
            return float(torch.where(r <= 1, 0.5 * r**2, r - 0.5).mean())

        cols = [y[:, j] for j in range(y.shape[1])]
        best = [
            minimize_scalar(huber, args=(c,), bounds=(float(c.min()), float(c.max())), method="bounded") for c in cols
        ]
        return float(sum(b.fun for b in best) / len(best))
    raise ReglabError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
