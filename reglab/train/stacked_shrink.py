"""Each stacked copy's own weight decay and proximal L1 (``StackedTrainer(..., shrink=True)``):
copies that differ only in these train as one model, each shrunk by its own strength.

The stacked optimizer steps without them; around its step, for every stacked parameter W (copy
s's slice W_s, with the hyperparameters of the group that copy s's own optimizer puts it in):

    coupled L2 (λ_s):         g_s ← g_s + λ_s W_s                before the step
    decoupled decay (λ_s):    W_s ← (1 − ηλ_s) W_s               before the step
    proximal L1 (α_s):        W_s ← W_s − clip(W_s, −ηα_s, ηα_s)  after the step

which is the chain's order (TECHNIQUES.md section 4; reglab.optim.named: the coupled term
before the scaling, the decoupled one applied as ``(1 − ηλ) W`` ahead of the scaled update, the
proximal step last) and the kernel path's (``g + λW`` inside the fused kernel, the proximal step
after it), each on the copy's own slice with the separate run's scalar. A copy whose strength is 0 is
not touched.

The terms commute with the rest of an elementwise update only where nothing comes before the
coupled term or between the update and the decay: ``shrink_problem`` refuses ``maximize`` (the
gradient is negated first), clipping by value (clipped before the decay is added) and a
weight-decay schedule (a strength that changes with the step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

SHRINK = ("weight_decay", "decoupled", "l1_proximal")  # the hyperparameters a copy holds of its own


def _groups(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[int, dict[str, Any]]:
    """id of each of ``model``'s parameters -> the group of ``optimizer`` that holds it."""
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


# options that act on the gradient before the decay, or make it change with the step: with any of
# them set, the decay cannot be moved out of the optimizer (option -> why)
BEFORE_DECAY = {
    "maximize": "maximize with weight decay or proximal L1 (the gradient is negated before the decay)",
    "clip_value": "clipping by value with weight decay or proximal L1 (clipped before the decay)",
    "weight_decay_schedule": "a weight-decay schedule",
}


def acts_before_decay(options: dict[str, Any]) -> str | None:
    """What in an optimizer's options or group keeps its decay in the optimizer, or None."""
    return next((why for name, why in BEFORE_DECAY.items() if options.get(name) not in (None, False)), None)


def shrink_problem(optimizers: Sequence[torch.optim.Optimizer]) -> str | None:
    """Why the copies' decay and proximal L1 cannot be applied copy by copy, or None."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            if group.get("weight_decay") or group.get("l1_proximal"):
                problem = acts_before_decay(group)
                if problem:
                    return problem
    return None


class CopyShrink:
    """The per-copy shrinkage of a ``StackedModel`` whose copies' own models and optimizers are
    ``models`` and ``optimizers`` (the separate runs' Trainers'): their groups' ``weight_decay``,
    ``decoupled`` and ``l1_proximal``, kept per stacked parameter as (copy, strength) for the
    copies whose strength is not 0. Each is applied to its copy's slice with a scalar, as the
    separate run's optimizer applies it: the same rounding, and a tenth of the time of one
    broadcast over every copy (a clamp between (S, 1, 1) bounds is not vectorized)."""

    def __init__(self, layers: nn.Sequential, models: Sequence[nn.Sequential], optimizers: Sequence[Any]) -> None:
        groups = [_groups(m, o) for m, o in zip(models, optimizers)]
        Terms = list[tuple[nn.Parameter, list[tuple[int, float]]]]
        self.coupled: Terms = []
        self.decoupled: Terms = []
        self.proximal: Terms = []
        for i, layer in enumerate(layers):
            for name, p in layer.named_parameters(recurse=False):
                own = [g[id(m[i].get_parameter(name))] for m, g in zip(models, groups)]
                coupled = [(s, float(g["weight_decay"])) for s, g in enumerate(own) if not g["decoupled"]]
                decoupled = [(s, float(g["weight_decay"])) for s, g in enumerate(own) if g["decoupled"]]
                proximal = [(s, float(g["l1_proximal"])) for s, g in enumerate(own)]
                for terms, copies in ((self.coupled, coupled), (self.decoupled, decoupled), (self.proximal, proximal)):
                    copies = [(s, v) for s, v in copies if v]
                    if copies:
                        terms.append((p, copies))

    def __bool__(self) -> bool:
        return bool(self.coupled or self.decoupled or self.proximal)

    @torch.no_grad()
    def before_step(self, lr: float) -> None:
        """The coupled terms into the gradients (``g + λW``, as the fused kernel adds them), the
        decoupled decay into the weights (``(1 − ηλ) W``, as ``Deferred.apply``)."""
        for p, copies in self.coupled:
            for s, lam in copies:
                p.grad[s].add_(p[s], alpha=lam)
        for p, copies in self.decoupled:
            for s, lam in copies:
                p[s].mul_(1 - lr * lam)

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        """Each copy's soft threshold at ηα_s, as ``reglab.optim.decay.soft_threshold_``."""
        for p, copies in self.proximal:
            for s, alpha in copies:
                w = p[s]
                w.sub_(w.clamp(-lr * alpha, lr * alpha))
