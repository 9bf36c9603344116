"""Losses (TECHNIQUES.md section 12) against float64 references, and MSE's outlier
sensitivity vs MAE's robustness shown on a fitted line."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

from reglab.data import Data
from reglab.train import fit
from reglab.train.diagnose import diagnose
from reglab.train.losses import LOSSES, chance_loss


def test_regression_losses_and_gradients_equal_a_float64_reference():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    for name, value, grad in (
        ("mse", np.mean((pred - target) ** 2), 2 * (pred - target) / pred.size),
        ("mae", np.mean(np.abs(pred - target)), np.sign(pred - target) / pred.size),
    ):
        p = torch.tensor(pred, requires_grad=True)
        loss = LOSSES[name](p, torch.tensor(target))
        loss.backward()
        assert loss.item() == pytest.approx(value, rel=1e-12)
        np.testing.assert_allclose(p.grad.numpy(), grad, rtol=1e-12)


def test_cross_entropy_takes_labels_and_soft_targets():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
    log_softmax = z - np.log(np.exp(z).sum(1, keepdims=True))
    soft = np.eye(4)[y] * 0.9 + 0.1 / 4
    ce = LOSSES["cross_entropy"]
    assert ce(torch.tensor(z), torch.tensor(y)).item() == pytest.approx(-log_softmax[np.arange(5), y].mean(), rel=1e-12)
    assert ce(torch.tensor(z), torch.tensor(soft)).item() == pytest.approx(
        -(soft * log_softmax).sum(1).mean(), rel=1e-12
    )


def test_chance_loss_is_the_best_constant_prediction():
    rng = np.random.default_rng(2)
    y = rng.standard_exponential(size=(101, 2))  # skewed: mean and median differ
    assert chance_loss("mse", torch.tensor(y)) == pytest.approx(np.var(y, axis=0).mean(), rel=1e-12)
    assert chance_loss("mae", torch.tensor(y)) == pytest.approx(np.abs(y - np.median(y, axis=0)).mean(), rel=1e-12)
    assert chance_loss("cross_entropy", torch.tensor([0, 1]), num_classes=10) == pytest.approx(math.log(10))
    for name, best in (("mse", y.mean(0)), ("mae", np.median(y, axis=0))):  # no other constant does better

        def loss(c, name=name):
            return LOSSES[name](torch.tensor(np.broadcast_to(c, y.shape).copy()), torch.tensor(y)).item()

        assert loss(best) == pytest.approx(chance_loss(name, torch.tensor(y)), rel=1e-12)
        for delta in (-0.05, 0.05):
            assert loss(best + delta) > loss(best)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        chance_loss("hinge", torch.tensor(y))


def test_huber_chance_loss_is_the_best_constant_by_a_float64_grid():
    rng = np.random.default_rng(3)
    y = np.concatenate([rng.normal(size=(95, 2)), 8 + rng.normal(size=(5, 2))])  # outliers: mean ≠ Huber's center

    def huber(c, col):  # delta = 1, as torch.nn.HuberLoss
        r = np.abs(col - c)
        return np.where(r <= 1, 0.5 * r**2, r - 0.5).mean()

    grid = np.linspace(y.min(), y.max(), 200_001)
    best = [min(huber(c, y[:, j]) for c in grid[::100]) for j in range(2)]  # coarse, then refine near it
    refined = []
    for j in range(2):
        c0 = grid[::100][np.argmin([huber(c, y[:, j]) for c in grid[::100]])]
        fine = np.linspace(c0 - 0.01, c0 + 0.01, 2001)
        refined.append(min(huber(c, y[:, j]) for c in fine))
    assert min(best) >= min(refined)
    assert chance_loss("huber", torch.tensor(y)) == pytest.approx(np.mean(refined), rel=1e-6)
    assert LOSSES["huber"] is torch.nn.functional.huber_loss


def _line_with_outliers():
    """y = 2x + 0.5 + small noise; the 10% of samples with the largest x read -10 instead."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 1, generator=g, dtype=torch.float64) * 2 - 1
    y = 2 * x + 0.5 + 0.05 * torch.randn(200, 1, generator=g, dtype=torch.float64)
    y[x[:, 0] > x.quantile(0.9)] = -10.0
    return x, y


def test_mse_follows_the_outliers_and_mae_ignores_them():
    x, y = _line_with_outliers()
    data = Data("line", x, y, x[:20], y[:20], x[:20], y[:20], num_classes=0)
    assert data.regression and data.num_outputs == 1
    design = np.hstack([x.numpy(), np.ones((200, 1))])
    # float64 references: least squares, and least absolute deviations as a linear program
    lsq = np.linalg.lstsq(design, y.numpy()[:, 0], rcond=None)[0]
    n = len(design)  # variables: slope, intercept, then t_i >= |y_i - design_i . w|
    c = np.concatenate([[0, 0], np.ones(n)])
    a_ub = np.block([[design, -np.eye(n)], [-design, -np.eye(n)]])
    b_ub = np.concatenate([y.numpy()[:, 0], -y.numpy()[:, 0]])
    lad = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * 2 + [(0, None)] * n).x[:2]
    fitted = {}
    for name in ("mse", "mae"):
        torch.manual_seed(0)
        model = nn.Linear(1, 1).double()
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.99**t)
        history = fit(
            model, data, opt, epochs=600, batch_size=200, loss_fn=LOSSES[name], callbacks=[_StepScheduler(sched)]
        )  # full-batch GD
        assert "train_acc" not in history[-1] and "valid_acc" not in history[-1]
        fitted[name] = np.array([model.weight.item(), model.bias.item()])
    np.testing.assert_allclose(fitted["mse"], lsq, atol=1e-3)
    np.testing.assert_allclose(fitted["mae"], lad, atol=1e-3)
    assert abs(fitted["mae"][0] - 2) < 0.1 < 1.0 < abs(fitted["mse"][0] - 2)  # robust vs dragged by 10% outliers


class _StepScheduler:
    def __init__(self, scheduler):
        self.scheduler = scheduler

    def on_epoch_end(self, trainer, record):
        self.scheduler.step()


def test_diagnose_with_a_regression_chance_level():
    flat = [{"epoch": e, "train_loss": 0.95, "valid_loss": 1.0} for e in range(1, 21)]
    d = diagnose(flat, chance=1.0)
    assert d.verdict == "underfitting" and "above the threshold 0.5 x the loss of a constant prediction (1) = 0.5" in (
        d.explanation
    )
    assert diagnose(flat, chance=10.0).verdict == "good fit"
    with pytest.raises(ValueError, match="num_classes >= 2"):
        diagnose(flat)


def test_the_trainer_picks_the_tasks_loss_by_default():
    from reglab.train import Trainer

    x = torch.randn(8, 2)
    regression = Data("r", x, x[:, :1].clone(), x, x[:, :1].clone(), x, x[:, :1].clone(), num_classes=0)
    labels = torch.tensor([0, 1] * 4)
    classification = Data("c", x, labels, x, labels, x, labels, num_classes=2)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert Trainer(model, regression, opt, epochs=1, batch_size=4).loss_fn is torch.nn.functional.mse_loss
    classifier = nn.Linear(2, 2)
    opt = torch.optim.SGD(classifier.parameters(), lr=0.1)
    assert Trainer(classifier, classification, opt, epochs=1, batch_size=4).loss_fn is torch.nn.functional.cross_entropy
