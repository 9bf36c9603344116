"""The spine's acceptance runs on MNIST-1D (a few seconds each)."""

import pytest

from reglab.lab.build import build
from reglab.lab.recipe import Recipe

BASELINE = Recipe()  # MLP 2x256, ReLU, Adam lr 1e-3, batch 100, no regularization, 100 epochs


@pytest.mark.slow
def test_baseline_overfits_visibly_and_is_diagnosed():
    import reglab

    result = reglab.fit(BASELINE)
    h, d = result.history, result.diagnosis
    valid = h.column("valid_loss")
    train = h.column("train_loss")
    best = min(range(len(valid)), key=valid.__getitem__)
    assert best < 40, "validation loss should reach its minimum early"
    assert valid[-1] >= 1.3 * valid[best], f"final {valid[-1]:.3f} vs minimum {valid[best]:.3f}"
    assert train[-1] < train[best] / 10, "training loss keeps falling"
    assert d.verdict == "overfitting" and d.best_epoch == best + 1


@pytest.mark.slow
def test_early_stopping_stops_within_patience_and_restores_the_best_model():
    patience = 10
    recipe = BASELINE.updated({"early_stopping.enabled": True, "early_stopping.patience": patience})
    trainer = build(recipe)
    h = trainer.fit()
    valid = h.column("valid_loss")
    best_epoch = 1 + min(range(len(valid)), key=valid.__getitem__)
    assert trainer.epoch - best_epoch <= patience and trainer.epoch < 100
    assert trainer.stop_reason.startswith("early stopping")
    restored_loss, _ = trainer.evaluate(trainer.data.x_valid, trainer.data.y_valid)
    assert restored_loss == pytest.approx(min(valid), rel=1e-6)
    assert restored_loss < valid[-1]


@pytest.mark.slow
def test_less_data_overfits_more():
    """TECHNIQUES.md section 11: the same network on fewer samples ends with a larger
    generalization gap and a higher best validation loss."""
    recipe = BASELINE.updated({"model.width": 128, "training.epochs": 40})
    gaps, valid = {}, {}
    for n in (200, 3200):
        h = build(recipe.updated({"data.train_size": n})).fit()
        gaps[n] = h[-1]["valid_loss"] - h[-1]["train_loss"]
        valid[n] = min(r["valid_loss"] for r in h)
    assert gaps[200] > 1.5 * gaps[3200] and valid[200] > 1.3 * valid[3200], (
        gaps,
        valid,
    )  # measured: 1.8-2.1x, 1.7-1.8x
