"""reglab.optim: optimizers as composable transforms, drop-in replacements for torch.optim.

Pieces (``init``/``update`` pairs on lists of tensors) compose with ``chain`` into an
``Optimizer``; the named optimizers (``SGD``, ``Adagrad``, ``Adadelta``, ``RMSprop``, ``Adam``,
``AdamW``) are such chains with ``torch.optim``'s signatures and defaults. Pieces and named
optimizers alike check their hyperparameters when built (range, NaN, type), naming the argument.

>>> import reglab.optim as ro
>>> opt = ro.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, decoupled=True)  # doctest: +SKIP
>>> adam_clipped = ro.chain(ro.clip_by_global_norm(1.0), ro.scale_by_adam())
>>> opt = ro.Optimizer(model.parameters(), adam_clipped, lr=1e-3)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch

from reglab._checks import check_bool
from reglab.errors import InputError, ReglabError
from reglab.optim.adaptive import scale_by_adadelta, scale_by_adagrad, scale_by_adam, scale_by_rms
from reglab.optim.alias import OPTIMIZERS, SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop, negate
from reglab.optim.base import Context, Deferred, Transform, chain, identity, scale, scale_by_schedule
from reglab.optim.clip import add_noise, clip_by_global_norm, clip_by_value, global_norm
from reglab.optim.decay import add_decayed_weights, add_l1, decay_groups, prox_l1
from reglab.optim.momentum import trace
from reglab.optim.optimizer import Optimizer

# Implementation switches, and options a TOML recipe cannot express (functions).
_NOT_OPTIONS = {
    "params",
    "lr",
    "foreach",
    "capturable",
    "differentiable",
    "weight_decay_schedule",
    "decoupled_weight_decay",
}


def option_names(name: str) -> list[str]:
    """The keyword options the optimizer ``name`` accepts from a recipe, besides ``lr``."""
    sig = inspect.signature(OPTIMIZERS[name])
    return sorted(p for p in sig.parameters if p not in _NOT_OPTIONS)


def default_lr(name: str) -> float:
    """The learning rate the optimizer ``name`` takes when none is given: its signature's, as
    torch.optim's (Adam 1e-3, Adagrad and RMSprop 1e-2, Adadelta 1: it needs no tuned η)."""
    return float(inspect.signature(OPTIMIZERS[name]).parameters["lr"].default)


def check_options(name: str, lr: float, options: dict[str, Any], where: str = "options") -> dict[str, Any]:
    """Check a recipe's options for the optimizer ``name`` as its constructor checks them (names,
    ranges, types), without building one; returns them. ``where`` prefixes the messages."""
    known = option_names(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ReglabError(f"{where}: {', '.join(unknown)} not an option of {name}; known: {', '.join(known)}")
    cls = OPTIMIZERS[name]
    try:
        if options.get("fused") is not None:
            check_bool("fused", options["fused"])
        cls.check_hyperparameters(cls.defaults_for(lr, **_arguments(options)))
    except InputError as e:
        raise e.within(where) from None
    return options


def _arguments(options: dict[str, Any]) -> dict[str, Any]:
    """TOML has no tuples: lists (betas) become tuples, as the optimizers take them."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def build_optimizer(
    name: str, lr: float, options: dict[str, Any], params: Iterable | torch.nn.Module, decay_all: bool = False
) -> torch.optim.Optimizer:
    """Build the optimizer ``name`` (TOML lists become tuples, e.g. betas).

    Given a model rather than parameters, weight decay and L1 (``l1``, ``l1_proximal``) act on
    the weights only, not on biases nor normalization parameters (``decay_groups``), unless
    ``decay_all``.
    """
    kwargs = _arguments(options)
    cls = OPTIMIZERS[name]
    if isinstance(params, torch.nn.Module):
        model = params
        params = model.parameters()
        weight_decay = kwargs.get("weight_decay", getattr(cls, "_default_weight_decay", 0.0))
        shrink = {
            "weight_decay": weight_decay,
            "l1": kwargs.get("l1", 0.0),
            "l1_proximal": kwargs.get("l1_proximal", 0.0),
        }
        if any(shrink.values()) and not decay_all:
            decay, keep = decay_groups(model, weight_decay)
            params = [{**decay, **shrink}, {**keep, **{k: 0.0 for k in shrink}}]
    return cls(params, lr=lr, **kwargs)


__all__ = [
    "OPTIMIZERS",
    "default_lr",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Context",
    "Deferred",
    "Optimizer",
    "RMSprop",
    "Transform",
    "add_decayed_weights",
    "add_l1",
    "add_noise",
    "build_optimizer",
    "chain",
    "clip_by_global_norm",
    "clip_by_value",
    "decay_groups",
    "global_norm",
    "identity",
    "negate",
    "prox_l1",
    "scale",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_rms",
    "scale_by_schedule",
    "trace",
    "check_options",
]
