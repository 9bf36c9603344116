"""Sharpness of a minimum (Keskar et al. 2016, arXiv:1609.04836; TECHNIQUES.md section 2).

Large batches tend to reach sharp minima, small batches flat ones. Keskar et al. measure how
sharp the minimum ``W`` a model reached is by the largest rise of the training loss ``f`` in a
small box around it, relative to the loss there:

    φ(W, ε) = (max_{y ∈ C_ε} f(W + y) − f(W)) / (1 + f(W)) × 100,
    C_ε = {y : |y_i| ≤ ε (|W_i| + 1)}

(their metric in the full parameter space, ``A = I``: the box's half-width is ε, scaled per
coordinate by ``|W_i| + 1`` so that large weights get a proportionate box). As in the paper,
the maximum is sought with L-BFGS-B (SciPy's, with the box as bounds), stopped after
``iterations``: a local maximum, so φ is a lower bound of the true one; a start at ``y = 0``
would stall where the gradient vanishes, so the search starts at a random point of the box
(``seed``). Near a minimum where cross-entropy has saturated (training loss ~1e-4) the loss is
so flat that the first iterations climb slowly: on digits, an MLP's φ(1e-3) read 2e-4 after 10
iterations, 0.23 after 50 and 1.2 after 200; compare models at the same ``iterations``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import Bounds, minimize
from torch import nn

from reglab._checks import check_float, check_int
from reglab.errors import ReglabError
from reglab.train.loop import EVAL_BATCH  # the loss is summed over batches of this size


def sharpness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epsilon: float = 1e-3,
    *,
    iterations: int = 100,
    seed: int = 0,
) -> float:
    """Keskar's sharpness φ(W, ε) of ``model``'s parameters on the loss over ``(x, y)``.

    The model is evaluated in ``eval()`` mode (no dropout; batch norm's running statistics),
    so that ``f`` is a function of the weights alone; its parameters and mode are restored.

    >>> phi = sharpness(model, data.x_train, data.y_train, torch.nn.functional.cross_entropy, 1e-3)  # doctest: +SKIP
    """
    epsilon = check_float("epsilon", epsilon, low=0, low_open=True)
    check_int("iterations", iterations, low=1)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ReglabError("sharpness needs a model with trainable parameters")
    w0 = torch.cat([p.detach().reshape(-1) for p in params]).double().cpu().numpy()
    saved = [p.detach().clone() for p in params]
    was_training = model.training
    model.eval()

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        flat = torch.from_numpy(w)
        with torch.no_grad():
            offset = 0
            for p in params:
                p.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        for p in params:
            p.grad = None
        total = 0.0
        for i in range(0, len(x), EVAL_BATCH):
            xb, yb = x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]
            loss = loss_fn(model(xb), yb) * (len(xb) / len(x))
            loss.backward()
            total += float(loss.detach())
        grad = torch.cat([p.grad.reshape(-1) for p in params]).double().cpu().numpy()
        return total, grad

    try:
        f0 = loss_and_grad(w0)[0]
        radius = epsilon * (np.abs(w0) + 1)
        start = np.random.default_rng(seed).uniform(-radius, radius)
        found = minimize(
            lambda y_: tuple(-v for v in loss_and_grad(w0 + y_)),
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=Bounds(-radius, radius),
            options={"maxiter": iterations},
        )
        highest = max(f0, -float(found.fun))  # f(W + 0) is in the box too
    finally:
        with torch.no_grad():
            for p, value in zip(params, saved):
                p.copy_(value)
                p.grad = None
        model.train(was_training)
    return (highest - f0) / (1 + f0) * 100
