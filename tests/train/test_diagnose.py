import math

import numpy as np
import pytest

from reglab.train import diagnose


def _history(train, valid):
    return [{"epoch": i + 1, "train_loss": t, "valid_loss": v} for i, (t, v) in enumerate(zip(train, valid))]


def test_overfitting_curve():
    e = np.arange(60)
    train = 2.0 * np.exp(-e / 8)
    valid = 1.0 + 0.002 * (e - 20) ** 2  # minimum at epoch 21 (index 20), rises to 4.2
    d = diagnose(_history(train, valid), num_classes=10)
    assert d.verdict == "overfitting"
    assert d.best_epoch == 21 and d.best_valid_loss == pytest.approx(1.0)
    assert d.gap_at_best == pytest.approx(1.0 - train[20])
    assert d.gap_at_end == pytest.approx(valid[-1] - train[-1])
    assert d.valid_rise == pytest.approx(valid[-1] - 1.0)
    assert d.overfit_onset == 22  # the first epoch after the minimum
    assert "overfitting" in d.explanation and "21" in d.explanation


def test_underfitting_curve():
    e = np.arange(30)
    train = 2.2 - 0.01 * e  # stays near ln 10 = 2.30
    valid = train + 0.05
    d = diagnose(_history(train, valid), num_classes=10)
    assert d.verdict == "underfitting" and d.overfit_onset is None


def test_good_fit_curve_and_noise_tolerance():
    rng = np.random.default_rng(0)
    e = np.arange(50)
    train = 0.2 + 1.5 * np.exp(-e / 5)
    valid = 0.3 + 1.5 * np.exp(-e / 5) + rng.normal(0, 0.01, 50)  # noisy plateau, no trend up
    d = diagnose(_history(train, valid), num_classes=10)
    assert d.verdict == "good fit" and d.overfit_onset is None


def test_rise_without_train_falling_is_not_overfitting():
    valid = [1.0, 0.8, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6]
    train = [0.5, 0.4, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7]  # training loss rises too: divergence, not overfitting
    assert diagnose(_history(train, valid), num_classes=10).overfit_onset is None


def test_empty_and_non_finite():
    with pytest.raises(ValueError, match="empty history"):
        diagnose([], 10)
    d = diagnose(_history([1.0, 0.5, math.nan], [1.2, 0.9, math.nan]), 10)
    assert d.best_epoch == 2


def test_a_run_whose_loss_became_non_finite_is_diagnosed_as_diverged():
    """The loop stops at the first non-finite training loss. That run was called a "good fit"
    (NaN compares False with every threshold) or, with no finite validation loss, not
    diagnosed at all (an error after training, and no history written)."""
    d = diagnose(_history([1.0, 0.5, math.nan], [1.2, 0.9, math.nan]), 10)
    assert d.verdict == "diverged" and d.best_epoch == 2 and d.best_valid_loss == 0.9
    assert d.explanation.startswith("diverged: the training loss became nan at epoch 3")
    assert "learning rate" in d.explanation and "validation loss is lowest (0.9) at epoch 2" in d.explanation
    d = diagnose(_history([1.0, math.inf], [1.2, 0.95]), 10)  # the valid loss of the last epoch was still finite
    assert d.verdict == "diverged" and "became inf at epoch 2" in d.explanation
    d = diagnose(_history([math.nan], [math.nan]), 10)
    assert d.verdict == "diverged" and d.best_epoch is None and math.isnan(d.best_valid_loss)
    assert "no epoch had a finite validation loss" in d.explanation


@pytest.mark.parametrize(
    "options, error, words",
    [
        ({"smooth": 0}, ValueError, "smooth must be >= 1, got 0"),
        ({"smooth": 2.5}, TypeError, "smooth must be an integer"),
        ({"rise_tolerance": -0.1}, ValueError, "rise_tolerance must be >= 0"),
        ({"rise_tolerance": math.nan}, ValueError, "rise_tolerance"),
        ({"underfit_fraction": 0.0}, ValueError, "underfit_fraction must be > 0"),
        ({"chance": -1.0}, ValueError, "chance must be >= 0"),
        ({"num_classes": 2.0}, TypeError, "num_classes must be an integer"),
    ],
)
def test_bad_options_are_named(options, error, words):
    history = _history([1.0, 0.5, 0.2], [1.2, 0.9, 1.0])
    with pytest.raises(error, match=words):
        diagnose(history, **{"num_classes": 10, **options})


def test_exploding_losses_are_unstable_not_underfitting():
    """``reglab train --lr 1e4``: training loss 5,365 and validation 6.9e11 were called
    "underfitting" (the training loss is high); a loss ten times a constant prediction's is the
    optimizer's doing, and the diagnosis says so."""
    train = [2.0, 50.0, 900.0, 5365.0]
    valid = [3.0, 1e6, 1e9, 6.9e11]
    d = diagnose(_history(train, valid), num_classes=10)
    assert d.verdict == "unstable" and "lower the learning rate" in d.explanation
    assert "above 10 x chance-level ln K (2.303)" in d.explanation
    near = diagnose(_history([2.3] * 10, [2.4] * 10), num_classes=10)  # at chance: underfitting, as before
    assert near.verdict == "underfitting"


def test_the_explanations_state_their_thresholds():
    e = np.arange(40)
    fit = diagnose(_history(0.2 + np.exp(-e / 5), 0.3 + np.exp(-e / 5)), num_classes=10)
    assert fit.verdict == "good fit" and "did not rise more than 10% above its minimum" in fit.explanation
    low = diagnose(_history(2.0 - 0.001 * e, 2.1 - 0.001 * e), num_classes=10)
    assert "ends at 1.961, above the threshold 0.5 x chance-level ln K (2.303) = 1.151" in low.explanation
    valid = np.concatenate([1.5 - 0.05 * e[:20], 0.5 + 0.05 * e[:20]])
    over = diagnose(_history(1.5 - 0.03 * e, valid), num_classes=10)
    assert over.verdict == "overfitting" and "by more than 10% above its minimum" in over.explanation
