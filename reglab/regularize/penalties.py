"""Parameter-norm penalties added to the loss (TECHNIQUES.md section 4).

- L2: ``(α/2) ‖W‖²₂`` (the convention whose gradient ``αW`` equals SGD weight decay ``α``;
  the course's ``α‖W‖²₂`` is ``l2_penalty(params, 2α)``);
- L1: ``α ‖W‖₁ = α Σ|w|`` (its subgradient ``α sign(W)`` makes weights hover around 0; the
  optimizers' ``l1_proximal`` option makes them exactly 0);
- elastic net: both.

Which parameters are penalized is a choice: by default the weights, not biases nor
normalization parameters (``penalized``; the rule is ``reglab.regularize.weights``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch import nn

from reglab._checks import check_float, check_module
from reglab.regularize.weights import weights


def penalized(model: nn.Module) -> list[torch.Tensor]:
    """The weights of ``model`` (``reglab.regularize.weights``: not biases, not norms)."""
    check_module("penalized", model)
    return weights(model)


def l2_penalty(params: Iterable[torch.Tensor], alpha: float) -> torch.Tensor:
    """``(α/2) Σ w²`` over ``params`` (a zero tensor when there are none)."""
    alpha = check_float("alpha", alpha, low=0)
    return 0.5 * alpha * _total((p * p).sum() for p in params)


def l1_penalty(params: Iterable[torch.Tensor], alpha: float) -> torch.Tensor:
    """``α Σ |w|`` over ``params`` (a zero tensor when there are none)."""
    alpha = check_float("alpha", alpha, low=0)
    return alpha * _total(p.abs().sum() for p in params)


def _total(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    total = None
    for term in terms:
        total = term if total is None else total + term
    return torch.zeros(()) if total is None else total


class Penalty:
    """Loss term ``model -> α₁‖W‖₁ + (α₂/2)‖W‖²₂`` over ``penalized(model)`` (elastic net
    when both are set), for the training loop's ``loss_terms``.

    The penalized weights are looked up once per model (one ``Penalty`` can serve several
    models, e.g. one per seed); a model whose layers are replaced after its first call keeps
    the weights found then."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = check_float("l1", l1, low=0)
        self.l2 = check_float("l2", l2, low=0)
        self._params: weakref.WeakKeyDictionary[nn.Module, list[torch.Tensor]] = weakref.WeakKeyDictionary()

    def __call__(self, model: nn.Module) -> torch.Tensor:
        params = self._params.get(model) if isinstance(model, nn.Module) else None
        if params is None:
            check_module("Penalty", model)
            params = self._params[model] = penalized(model)
        total = torch.zeros((), device=params[0].device) if params else torch.zeros(())
        if self.l1:
            total = total + l1_penalty(params, self.l1)
        if self.l2:
            total = total + l2_penalty(params, self.l2)
        return total


@torch.no_grad()
def weight_stats(model: nn.Module, tiny: float = 1e-6) -> dict[str, float]:
    """Statistics of the penalized weights: fraction exactly 0, fraction below ``tiny`` in
    magnitude, L1 and L2 norms; and the same fractions for the first layer alone."""
    check_float("tiny", tiny, low=0, low_open=True)
    check_module("weight_stats", model)
    params = penalized(model)
    if not params:
        return {}
    flat = torch.cat([p.detach().flatten() for p in params])
    first = params[0].detach()
    return {
        "zero_frac": float((flat == 0).float().mean()),
        "tiny_frac": float((flat.abs() < tiny).float().mean()),
        "weight_l1": float(flat.abs().sum()),
        "weight_l2": float(flat.norm()),
        "first_zero_frac": float((first == 0).float().mean()),
        "first_tiny_frac": float((first.abs() < tiny).float().mean()),
    }
