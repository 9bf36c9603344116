"""Overfitting diagnosis from a History (TECHNIQUES.md section 1).

- best epoch: where the validation loss is lowest;
- generalization gap: ``valid_loss - train_loss``, at the best epoch and at the end;
- overfitting onset: the epoch from which the validation loss rises while the training loss
  keeps falling. Both curves are smoothed by a centered moving average (``smooth`` epochs) so
  that one noisy epoch does not decide; the onset is the epoch after the minimum of the
  smoothed validation curve, reported only if the smoothed validation loss then rises by more than
  ``rise_tolerance`` (relative) while the smoothed training loss falls;
- verdict: ``unstable`` when the final training loss is above ``unstable_factor`` times the
  chance-level loss (the steps throw the model far from any fit: worse than a constant
  prediction by that factor), else ``underfitting`` when the final training loss stays above
  ``underfit_fraction`` of the chance-level loss (both losses high: high bias), else
  ``overfitting`` when an onset exists, else ``good fit``. The chance level is ``ln K`` for K
  classes (uniform logits); for regression, pass the loss of predicting a constant
  (``reglab.train.losses.chance_loss``).
  A run that ended on a non-finite loss is ``diverged``, whatever came before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reglab._checks import check_float, check_int
from reglab.errors import ReglabError


@dataclass(frozen=True)
class Diagnosis:
    verdict: str  # "underfitting", "good fit", "overfitting", "unstable" or "diverged"
    best_epoch: int | None  # epoch (1-based) of minimum validation loss; None if none was finite
    best_valid_loss: float
    final_valid_loss: float
    final_train_loss: float
    gap_at_best: float  # valid - train loss at the best epoch
    gap_at_end: float  # valid - train loss at the last epoch
    valid_rise: float  # (final - minimum validation loss) / minimum
    overfit_onset: int | None  # epoch from which valid loss rises while train loss falls
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(
    history: Sequence[dict[str, Any]],
    num_classes: int = 0,
    *,
    chance: float | None = None,
    smooth: int = 5,
    rise_tolerance: float = 0.1,
    underfit_fraction: float = 0.5,
    unstable_factor: float = 10.0,
) -> Diagnosis:
    """Diagnose over/underfitting from per-epoch ``train_loss`` and ``valid_loss``; the chance
    level is ``chance`` if given, else ``ln num_classes``."""
    check_int("num_classes", num_classes, low=0)
    if chance is not None:
        chance = check_float("chance", chance, low=0)
    check_int("smooth", smooth, low=1)
    rise_tolerance = check_float("rise_tolerance", rise_tolerance, low=0)
    underfit_fraction = check_float("underfit_fraction", underfit_fraction, low=0, low_open=True)
    unstable_factor = check_float("unstable_factor", unstable_factor, low=1)
    if chance is None and num_classes < 2:
        raise ReglabError(
            f"diagnose needs num_classes >= 2 (chance level ln K) or a chance loss, got num_classes={num_classes}"
        )
    if not history:
        raise ReglabError("cannot diagnose an empty history: no epoch was run")
    train = np.array([r["train_loss"] for r in history], dtype=float)
    valid = np.array([r["valid_loss"] for r in history], dtype=float)
    epochs = [r["epoch"] for r in history]
    chance_name = "chance-level ln K" if chance is None else "the loss of a constant prediction"
    chance = math.log(num_classes) if chance is None else chance
    finite = np.isfinite(valid)
    if not finite.any():
        return _diverged(train, valid, epochs, best=None, summary="no epoch had a finite validation loss")
    best = int(np.nanargmin(np.where(finite, valid, np.nan)))
    gap_best, gap_end = valid[best] - train[best], valid[-1] - train[-1]
    rise = (valid[-1] - valid[best]) / abs(valid[best]) if valid[best] else math.inf
    summary = (
        f"validation loss is lowest ({valid[best]:.4g}) at epoch {epochs[best]} and ends at {valid[-1]:.4g} "
        f"({rise:+.0%}); training loss ends at {train[-1]:.4g}; gap valid-train {gap_best:.4g} at the best "
        f"epoch, {gap_end:.4g} at the end"
    )
    if not (math.isfinite(train[-1]) and math.isfinite(valid[-1])):
        return _diverged(train, valid, epochs, best, summary)
    onset = _onset(train, valid, smooth, rise_tolerance)
    if train[-1] > unstable_factor * chance:
        verdict = "unstable"
        why = (
            f"the losses exploded: training loss ends at {train[-1]:.4g}, above {unstable_factor:g} x "
            f"{chance_name} ({chance:.4g}); the steps are too large: lower the learning rate, or clip the gradients"
        )
    elif train[-1] > underfit_fraction * chance:
        verdict = "underfitting"
        why = (
            f"training loss stays high: it ends at {train[-1]:.4g}, above the threshold {underfit_fraction:g} x "
            f"{chance_name} ({chance:.4g}) = {underfit_fraction * chance:.4g}"
        )
    elif onset is not None:
        verdict = "overfitting"
        why = (
            f"from epoch {epochs[onset]} validation loss rises (smoothed over {smooth} epochs, by more than "
            f"{rise_tolerance:.0%} above its minimum) while training loss keeps falling"
        )
    else:
        verdict = "good fit"
        why = (
            f"training loss is low (below {underfit_fraction:g} x {chance_name}) and validation loss did not rise "
            f"more than {rise_tolerance:.0%} above its minimum while training loss fell (smoothed over {smooth} "
            "epochs)"
        )
    return Diagnosis(
        verdict=verdict,
        best_epoch=int(epochs[best]),
        best_valid_loss=float(valid[best]),
        final_valid_loss=float(valid[-1]),
        final_train_loss=float(train[-1]),
        gap_at_best=float(gap_best),
        gap_at_end=float(gap_end),
        valid_rise=float(rise),
        overfit_onset=None if onset is None else int(epochs[onset]),
        explanation=f"{verdict}: {why}; {summary}.",
    )


def _diverged(train: np.ndarray, valid: np.ndarray, epochs: list[int], best: int | None, summary: str) -> Diagnosis:
    """The run ended on a non-finite loss (the loop stops at the first non-finite training
    loss): verdict ``diverged``, naming the epoch; best-epoch figures from the finite epochs."""
    bad = next(i for i in range(len(epochs)) if not (math.isfinite(train[i]) and math.isfinite(valid[i])))
    which, value = ("training", train[bad]) if not math.isfinite(train[bad]) else ("validation", valid[bad])
    why = f"the {which} loss became {value} at epoch {epochs[bad]} (lower the learning rate, or clip the gradients)"
    nan = math.nan
    return Diagnosis(
        verdict="diverged",
        best_epoch=None if best is None else int(epochs[best]),
        best_valid_loss=nan if best is None else float(valid[best]),
        final_valid_loss=float(valid[-1]),
        final_train_loss=float(train[-1]),
        gap_at_best=nan if best is None else float(valid[best] - train[best]),
        gap_at_end=float(valid[-1] - train[-1]),
        valid_rise=nan
        if best is None
        else float((valid[-1] - valid[best]) / abs(valid[best]) if valid[best] else math.inf),
        overfit_onset=None,
        explanation=f"diverged: {why}; {summary}.",
    )


def _onset(train: np.ndarray, valid: np.ndarray, smooth: int, rise_tolerance: float) -> int | None:
    if not (np.isfinite(train).all() and np.isfinite(valid).all()):
        return None
    ts, vs = _moving_average(train, smooth), _moving_average(valid, smooth)
    i = int(np.argmin(vs))
    rises = vs[-1] > vs[i] * (1 + rise_tolerance)
    falls = ts[-1] < ts[i]
    return min(i + 1, len(vs) - 1) if rises and falls else None


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average; the window shrinks at both ends."""
    half = max(window, 1) // 2
    c = np.concatenate([[0.0], np.cumsum(x)])
    lo = np.clip(np.arange(len(x)) - half, 0, len(x))
    hi = np.clip(np.arange(len(x)) + half + 1, 0, len(x))
    return (c[hi] - c[lo]) / (hi - lo)
