"""The named optimizers' shared part: their common options, validation and chain assembly.

``_Named`` turns torch.optim-style keyword arguments into a chain of pieces (``_chain``) and
checks every hyperparameter of every group (``check_hyperparameters``), at construction and
when a state is loaded; ``defaults_for`` gives the hyperparameters a group would hold without
building an optimizer, so that a recipe can be checked by the same rules before any training.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from reglab._checks import check_bool, check_float, check_lr
from reglab.errors import ReglabError, ReglabTypeError
from reglab.optim.base import Transform, chain
from reglab.optim.clip import clip_by_global_norm, clip_by_value, global_norm
from reglab.optim.decay import add_decayed_weights, add_l1, prox_l1
from reglab.optim.optimizer import Optimizer

_IMPLEMENTATION = ("foreach", "fused", "differentiable", "capturable")  # how to step, not what


def negate() -> Transform:
    """``u ← −g``: ascend instead of descend (``maximize=True``)."""
    return Transform(lambda params: {}, lambda updates, state, ctx: torch._foreach_neg(updates), elementwise=True)


class _Named(Optimizer):
    """Shared options, validation and chain assembly of the named optimizers."""

    # hyperparameter -> (low, high, high_open): checked for every parameter group
    _ranges: dict[str, tuple[float, float | None, bool]] = {}

    def __init__(
        self,
        params: Iterable,
        lr: float,
        *,
        weight_decay: float,
        maximize: bool,
        decoupled: bool,
        weight_decay_schedule: Callable[[int], float] | None,
        l1: float,
        l1_proximal: float,
        clip_norm: float | None,
        clip_value: float | None,
        foreach: bool | None,
        fused: bool | None,
        differentiable: bool = False,
        capturable: bool = False,
        **hyper: Any,
    ) -> None:
        if foreach is not None:  # accepted for torch.optim's signature; ``fused`` is checked by Optimizer
            check_bool("foreach", foreach)
            if foreach and fused:  # as torch.optim: two implementations asked for at once
                raise ReglabError("fused=True and foreach=True cannot be asked together: choose one")
        if differentiable or capturable:
            raise NotImplementedError(f"{type(self).__name__}: differentiable and capturable are not supported")
        defaults = dict(
            weight_decay=weight_decay,
            maximize=maximize,
            decoupled=decoupled,
            weight_decay_schedule=weight_decay_schedule,
            l1=l1,
            l1_proximal=l1_proximal,
            clip_norm=clip_norm,
            clip_value=clip_value,
            foreach=foreach,
            fused=fused,
            **hyper,
        )
        super().__init__(params, self._chain, lr=lr, fused=defaults.pop("fused"), **defaults)

    def begin_step(self) -> None:
        self._norm = None  # this step's norm over every group that clips by norm, computed when asked

    def _clip_input_norm(self) -> torch.Tensor:
        """``‖g‖`` over the gradients of every group that clips by norm, as its chain sees them
        (clipped by value first, where the group asks for it); once per step."""
        if self._norm is None:
            grads = []
            for group in self.param_groups:
                if group["clip_norm"] is None:
                    continue
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.to_dense() if p.grad.is_sparse else p.grad
                    g = torch.view_as_real(g) if g.is_complex() else g
                    if group["clip_value"] is not None:
                        g = g.clamp(-group["clip_value"], group["clip_value"])
                    grads.append(g)
            if not grads:
                self._norm = torch.zeros(())
            elif len({g.dtype for g in grads}) == 1:
                self._norm = global_norm(grads)
            else:  # groups of several dtypes: their norms in float64
                self._norm = global_norm([g.double() for g in grads])
        return self._norm

    def check_group(self, group: dict[str, Any]) -> None:
        self.check_hyperparameters(group)  # first: building the chain needs them valid
        super().check_group(group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # hyperparameters read from a file are checked as if given
            self.check_hyperparameters(group)

    @classmethod
    def check_hyperparameters(cls, group: dict[str, Any]) -> None:
        """Raise for a hyperparameter out of its range, NaN or of the wrong type, naming it; ``group``
        is a parameter group's hyperparameters (``defaults_for`` makes one without parameters)."""
        check_lr(group["lr"])
        for name in ("weight_decay", "l1", "l1_proximal"):
            check_float(name, group[name], low=0)
        for name in ("clip_norm", "clip_value"):
            if group[name] is not None:
                check_float(name, group[name], low=0, low_open=True)
        for name in ("maximize", "decoupled"):
            check_bool(name, group[name])
        for name, (low, high, high_open) in cls._ranges.items():
            check_float(name, group[name], low=low, high=high, low_open=name == "eps", high_open=high_open)
        for name in ("nesterov", "amsgrad", "centered", "eps_in_sqrt", "bias_correction"):
            if name in group:
                check_bool(name, group[name])
        schedule = group.get("weight_decay_schedule")
        if schedule is not None and not callable(schedule):
            raise ReglabTypeError(f"weight_decay_schedule must be a function of the step, got {schedule!r}")

    @classmethod
    def defaults_for(cls, lr: float, **options: Any) -> dict[str, Any]:
        """The hyperparameters a group of ``cls(params, lr, **options)`` would hold: the
        signature's defaults, then the class's own resolution (``resolve``)."""
        bound = inspect.signature(cls.__init__).bind(None, None, lr, **options)
        bound.apply_defaults()
        kwargs = {k: v for k, v in bound.arguments.items() if k not in ("self", "params")}
        return cls.resolve(kwargs)

    @classmethod
    def resolve(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments -> group hyperparameters (subclasses resolve their aliases)."""
        return {k: v for k, v in kwargs.items() if k not in _IMPLEMENTATION}

    def _chain(self, group: dict[str, Any]) -> Transform:
        wd, schedule = group["weight_decay"], group["weight_decay_schedule"]
        decay = [add_decayed_weights(wd, schedule)] if wd else []
        pieces = [negate()] if group["maximize"] else []
        if group["clip_value"] is not None:
            pieces.append(clip_by_value(group["clip_value"]))
        if group["clip_norm"] is not None:
            pieces.append(clip_by_global_norm(group["clip_norm"], norm=self._clip_input_norm))
        if not group["decoupled"]:
            pieces += decay
        if group["l1"]:
            pieces.append(add_l1(group["l1"]))
        pieces += self._scaling(group)
        if group["decoupled"]:
            pieces += decay
        if group["l1_proximal"]:
            pieces.append(prox_l1(group["l1_proximal"]))
        return chain(*pieces)

    def _scaling(self, group: dict[str, Any]) -> list[Transform]:
        raise NotImplementedError
