"""Which parameters are weights: one rule for penalties, weight decay, L1, weight noise, weight
statistics, gradient norms and initialization (TECHNIQUES.md section 4).

A *weight* is a parameter that is neither a bias (its name starts with ``bias``: a Linear's
``bias``, a recurrent layer's ``bias_ih_l0``) nor a parameter of a normalization layer (batch,
layer, group and instance norm's γ and β). Linear and convolution kernels, embeddings and
recurrent matrices are weights. Penalizing or decaying a bias or a norm's scale constrains
nothing that overfits and can only hurt, so the default leaves them alone.

>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
>>> [name for name, _ in named_weights(model)]
['0.weight', '2.weight']
"""

from __future__ import annotations

import torch
from torch import nn

NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def is_weight(module: nn.Module, name: str) -> bool:
    """Whether ``module``'s own parameter ``name`` is a weight (the rule above; a module that
    says ``is_norm = True`` counts as a normalization layer)."""
    return not name.startswith("bias") and not isinstance(module, NORM_LAYERS) and not getattr(module, "is_norm", False)


def named_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(qualified name, parameter)`` of every weight of ``model``, in module order, each once
    (a weight shared by two layers is listed under its first name)."""
    seen: set[int] = set()
    out = []
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not is_weight(module, name):
                continue
            seen.add(id(p))
            out.append((f"{module_name}.{name}" if module_name else name, p))
    return out


def weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights of ``model`` (``named_weights`` without the names)."""
    return [p for _, p in named_weights(model)]


@torch.no_grad()
def weight_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of each weight's gradient, keyed by its layer (the weight's name without a final
    ``.weight``): shows vanishing and exploding gradients layer by layer."""
    return {
        name.removesuffix(".weight"): float(p.grad.norm()) for name, p in named_weights(model) if p.grad is not None
    }
