"""Keskar's sharpness against its closed form on a least-squares problem (float64)."""

import numpy as np
import pytest
import torch
from torch import nn

from reglab.train.losses import LOSSES
from reglab.train.sharpness import sharpness


def _least_squares(scale: float = 1.0):
    """A linear model at the minimum of a mean squared error whose Hessian is diagonal.

    With orthogonal design columns, f(W + y) = f(W) + Σ_i s_i y_i² at the minimizer W
    (s_i = ‖X_i‖² / N): the largest rise over the box |y_i| <= r_i is Σ_i s_i r_i², at any vertex.
    """
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(64, 4)))
    x = q * np.array([1.0, 2.0, 3.0, 5.0]) * scale * 8  # orthogonal columns, distinct curvatures
    t = x @ np.array([0.5, -1.0, 2.0, 0.1]) + rng.normal(size=64)
    w = np.linalg.lstsq(x, t, rcond=None)[0]
    model = nn.Linear(4, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w)[None])
    f0 = np.mean((x @ w - t) ** 2)
    s = (x**2).sum(0) / len(x)
    return model, torch.tensor(x), torch.tensor(t)[:, None], w, f0, s


@pytest.mark.parametrize("epsilon", [1e-3, 5e-2])
def test_sharpness_equals_the_closed_form_at_a_least_squares_minimum(epsilon):
    model, x, t, w, f0, s = _least_squares()
    radius = epsilon * (np.abs(w) + 1)
    expected = (s * radius**2).sum() / (1 + f0) * 100
    assert sharpness(model, x, t, LOSSES["mse"], epsilon) == pytest.approx(expected, rel=1e-6)


def test_a_sharper_minimum_measures_sharper_and_the_model_is_left_as_it_was():
    flat, x, t, *_ = _least_squares(1.0)
    sharp, xs, ts, *_ = _least_squares(3.0)
    before = flat.weight.detach().clone()
    flat.train()
    phi_flat = sharpness(flat, x, t, LOSSES["mse"], 1e-2)
    assert torch.equal(flat.weight, before) and flat.weight.grad is None and flat.training
    assert 0 < phi_flat < sharpness(sharp, xs, ts, LOSSES["mse"], 1e-2)


def test_sharpness_of_a_network_is_deterministic_and_in_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    x, y = torch.randn(50, 6), torch.randint(0, 3, (50,))
    a = sharpness(model, x, y, LOSSES["cross_entropy"], 1e-3, seed=1)
    assert a == sharpness(model, x, y, LOSSES["cross_entropy"], 1e-3, seed=1) and a >= 0  # dropout off: f is a function


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"epsilon": float("nan")}, ValueError, "epsilon"),
        ({"epsilon": "big"}, TypeError, "epsilon"),
        ({"iterations": 0}, ValueError, "iterations"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, words):
    model, x, t, *_ = _least_squares()
    with pytest.raises(error, match=words):
        sharpness(model, x, t, LOSSES["mse"], **kwargs)
