"""Optimizers, looked up by name from a recipe.

Until reglab's own composable optimizers land, the registry is backed by ``torch.optim``; the
recipe side (names, ``lr``, keyword options, validation) does not change when they do.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}

# Implementation switches of torch.optim that are not hyperparameters of the method.
_NOT_OPTIONS = {"params", "lr", "foreach", "fused", "capturable", "differentiable"}


def option_names(name: str) -> list[str]:
    """The keyword options the optimizer ``name`` accepts besides ``lr``."""
    sig = inspect.signature(OPTIMIZERS[name])
    return sorted(p for p in sig.parameters if p not in _NOT_OPTIONS)


def validate_options(name: str, lr: float, options: dict[str, Any]) -> dict[str, Any]:
    """Check option names and values by building the optimizer on a throwaway parameter."""
    known = option_names(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"optimizer.options: {', '.join(unknown)} not an option of {name}; known: {', '.join(known)}")
    try:
        build_optimizer(name, lr, options, [torch.zeros(1, requires_grad=True)])
    except (ValueError, TypeError, RuntimeError) as e:
        raise type(e)(f"optimizer.options for {name} (lr={lr}, {options}): {e}") from None
    return options


def build_optimizer(name: str, lr: float, options: dict[str, Any], params: Iterable) -> torch.optim.Optimizer:
    """Build the optimizer ``name`` over ``params`` (TOML lists become tuples, e.g. betas)."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return OPTIMIZERS[name](params, lr=lr, **kwargs)
