"""Confidence and expected calibration error against a float64 reference written from the
definition (Guo et al. 2017), and in a run's summary."""

import numpy as np
import pytest
import torch

from reglab.train.calibration import calibration


def _reference(logits: np.ndarray, labels: np.ndarray, bins: int) -> tuple[float, float]:
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    conf, pred = p.max(1), p.argmax(1)
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    return float(conf.mean()), float(ece)


@pytest.mark.parametrize("bins", [1, 10, 15])
def test_confidence_and_ece_match_the_definition(bins):
    rng = np.random.default_rng(bins)
    logits = rng.normal(scale=3, size=(500, 7))
    labels = rng.integers(0, 7, size=500)
    got = calibration(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels), bins=bins)
    conf, ece = _reference(logits, labels, bins)
    assert got["confidence"] == pytest.approx(conf, rel=1e-6)
    assert got["ece"] == pytest.approx(ece, rel=1e-5, abs=1e-7)


def test_a_calibrated_and_an_over_confident_model():
    rng = np.random.default_rng(0)
    n = 20000
    labels = np.zeros(n, dtype=np.int64)
    right = rng.random(n) < 0.8  # 80% right when 80% sure: calibrated
    logits = np.where(right[:, None], [[np.log(0.8), np.log(0.2)]], [[np.log(0.2), np.log(0.8)]])
    got = calibration(torch.tensor(logits), torch.tensor(labels))
    assert got["confidence"] == pytest.approx(0.8) and got["ece"] < 0.01
    sure = calibration(torch.tensor(10 * logits), torch.tensor(labels))  # same ranking, near-certain
    assert sure["confidence"] > 0.99 and sure["ece"] == pytest.approx(sure["confidence"] - 0.8, abs=0.01)


def test_a_run_summary_has_the_test_calibration_or_regression_errors():
    from reglab.lab.recipe import Recipe
    from reglab.lab.run import train_recipe

    result = train_recipe(Recipe().updated({"data.name": "digits", "training.epochs": 1, "model.width": 16}))
    s = result.summary
    from reglab.data import load_data

    assert 0 < s["test_confidence"] <= 1 and 0 <= s["test_ece"] <= 1
    assert s["train_samples"] == len(load_data("digits", seed=0).x_train)
    reg = train_recipe(Recipe().updated({"data.name": "diabetes", "training.loss": "mae", "training.epochs": 2}))
    assert reg.summary["test_mae"] == pytest.approx(reg.summary["test_loss"], rel=1e-5), "mae: the test loss itself"
    assert reg.summary["test_mse"] > 0 and "test_confidence" not in reg.summary
