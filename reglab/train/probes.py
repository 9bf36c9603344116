"""What a run can measure besides its losses: the optimizer's effective step size, dead ReLU
units, and a batch-norm model's accuracy with batch statistics (TECHNIQUES.md sections 3, 8, 10).

- ``StepSize`` (a callback, ``training.step_size``): the step the optimizer actually took at the
  last step of each epoch, relative to the gradient, as the median over the weights' elements of

      s = |ΔW| / |g|     (elements with g ≠ 0)

  For SGD s = η; for Adagrad with a constant gradient g, s = η / √(t·g² + ε) (ε inside, the
  course's form) shrinks as 1/√t; RMSprop's and Adam's running averages forget, so theirs does not.
- ``dead_fraction(model, x)``: the fraction of ReLU-family units (inputs to every ``ReLU`` and
  ``LeakyReLU`` module) whose pre-activation is ≤ 0 for every sample of ``x``: a dead ReLU
  outputs 0 for all of them and passes no gradient back (a leaky one passes ``slope`` times it).
- ``batch_stats_accuracy(model, x, y, batch_size)``: the accuracy when batch norm normalizes
  with the statistics of each batch (its training mode) instead of its running averages (its
  evaluation mode): what inference in ``train()`` mode would give.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from reglab.regularize.weights import weights
from reglab.train.callbacks import Callback

if TYPE_CHECKING:
    from reglab.train.loop import Trainer


class StepSize(Callback):
    """Adds ``step_size`` (the median of |ΔW| / |g| over the weights' elements at the epoch's
    last step, see the module's docstring) to every epoch's record."""

    records = ("step_size",)

    def on_train_begin(self, trainer: Trainer) -> None:
        self.weights = weights(trainer.model)
        self.steps_per_epoch = math.ceil(len(trainer.data.x_train) / trainer.batch_size)
        self.count = 0  # steps taken in this epoch
        self.before: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # (W, g) before the last step

    def on_after_backward(self, trainer: Trainer) -> None:
        self.count += 1
        if self.count == self.steps_per_epoch:
            self.before = [(w.detach().clone(), w.grad.detach().clone()) for w in self.weights if w.grad is not None]

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.count = 0
        if not self.before:
            return
        ratios = []
        for w, (w0, g) in zip((w for w in self.weights if w.grad is not None), self.before):
            moved = (w.detach() - w0).abs().flatten()
            g = g.abs().flatten()
            keep = g > 0
            ratios.append(moved[keep] / g[keep])
        self.before = None
        values = torch.cat(ratios)
        record["step_size"] = float(values.double().median()) if len(values) else math.nan


@torch.no_grad()
def dead_fraction(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> float | None:
    """The fraction of ReLU-family units dead on every sample of ``x`` (module docstring);
    ``None`` for a model without ReLU or LeakyReLU modules. The model runs in ``eval()`` mode
    (mode restored after)."""
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    if not acts:
        return None
    alive: dict[int, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        positive = (inputs[0] > 0).flatten(1).any(0)  # a unit: one feature (mlp) or one channel at one position
        alive[id(module)] = positive if id(module) not in alive else alive[id(module)] | positive

    handles = [m.register_forward_pre_hook(hook) for m in acts]
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch):
            model(x[i : i + batch])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    units = sum(a.numel() for a in alive.values())
    return float(sum(int((~a).sum()) for a in alive.values())) / units if units else None


@torch.no_grad()
def batch_stats_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float | None:
    """Accuracy with batch norm in training mode (each batch's own statistics), batches of
    ``batch_size`` in order, dropout off; ``None`` for a model without batch norm. The model
    itself is not changed (a copy runs: training mode updates the running averages)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return None
    probe = copy.deepcopy(model).eval()
    for m in probe.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    n = len(x) - 1 if len(x) % batch_size == 1 else len(x)  # a last batch of 1 has no variance: left out
    correct = 0
    for i in range(0, n, batch_size):
        xb, yb = x[i : min(i + batch_size, n)], y[i : min(i + batch_size, n)]
        correct += int((probe(xb).argmax(1) == (yb.argmax(1) if yb.ndim == 2 else yb)).sum())
    return correct / n
