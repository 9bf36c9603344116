"""How confident a classifier is, and whether its confidence can be believed (TECHNIQUES.md
section 9: label smoothing and Mixup against over-confidence).

- confidence: the mean over samples of the largest predicted probability, ``mean_i max_k p_ik``;
- expected calibration error (Guo et al. 2017): the samples are put in ``bins`` equal-width bins
  of their confidence, and ``ECE = Σ_b (n_b / N) |acc_b − conf_b|``, the gap between the accuracy
  and the mean confidence of each bin weighted by its share of the samples. A perfectly
  calibrated model (right 80% of the time when 80% sure) has ECE 0; an over-confident one has a
  mean confidence above its accuracy.
"""

from __future__ import annotations

import torch

from reglab._checks import check_int

BINS = 15  # Guo et al.'s number of bins


def calibration(logits: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> dict[str, float]:
    """``{"confidence": mean max-probability, "ece": expected calibration error}`` of ``logits``
    ``(N, K)`` against integer ``labels`` ``(N,)``, computed in float64."""
    check_int("bins", bins, low=1)
    p = torch.softmax(logits.double(), dim=1)
    confidence, predicted = p.max(dim=1)
    right = (predicted == labels).double()
    which = torch.clamp((confidence * bins).ceil().long() - 1, 0, bins - 1)  # bin b holds (b/B, (b+1)/B]
    conf_sum = torch.bincount(which, weights=confidence, minlength=bins)
    right_sum = torch.bincount(which, weights=right, minlength=bins)
    ece = float((conf_sum - right_sum).abs().sum() / len(labels))  # Σ (n_b/N) |acc_b − conf_b|
    return {"confidence": float(confidence.mean()), "ece": ece}
