"""Transform and chain: optimizers as compositions of small update rules.

A ``Transform`` is a pair of functions over the tensors of one parameter group (optax's
``GradientTransformation``, on lists of tensors so that ``torch._foreach_*`` ops keep it fast):

- ``init(params) -> state``: a dict of named lists of tensors, one tensor per parameter
  (``{"mu": [...], "nu": [...]}``);
- ``update(updates, state, ctx) -> updates``: turns incoming updates (at first, gradients)
  into outgoing ones, updating ``state`` in place. It never writes into the ``updates`` it
  was given: they may be the parameters' ``.grad`` or another transform's state. A piece
  whose update ends in a quotient or a weight decay may return it as a ``Deferred``, which
  the optimizer applies in torch.optim's passes (one ``addcdiv_``) instead of materializing it.
- ``after_step(state, ctx)`` (optional): acts on the parameters after the step, for
  operations that are not an additive update (the proximal L1 step).

``chain(*transforms)`` runs pieces one after the other as one Transform. The
``torch.optim.Optimizer`` that steps parameters with a Transform is in optimizer.py.

>>> from reglab.optim import Optimizer, chain, scale_by_adam, add_decayed_weights
>>> opt = Optimizer(model.parameters(), chain(scale_by_adam(), add_decayed_weights(1e-2)), lr=1e-3)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from reglab._checks import check_float, check_schedule
from reglab.errors import ReglabError, ReglabTypeError

State = dict[str, list[Tensor]]


class Context(NamedTuple):
    params: list[Tensor]  # the parameters being updated, in the order of the updates
    grads: list[Tensor]  # their gradients (never to be written into)
    steps: list[int]  # per-parameter step count t, counting this step (1 on the first)
    group: dict[str, Any]  # the parameter group: lr and any hyperparameter a scheduler may change
    scalars: Callable[[Callable[[int], float]], list] | None = None  # fast mode's per_step

    def per_step(self, fn: Callable[[int], float]) -> list:
        """``[fn(t) for each parameter]``: how a piece gets step-dependent numbers (bias
        corrections, schedules), so that the fast mode can compute them once per step."""
        if self.scalars is not None:
            return self.scalars(fn)
        return [fn(t) for t in self.steps]


class Deferred(NamedTuple):
    """An update ``u = s · num / den + λ W`` left for the optimizer to apply the way
    torch.optim does, ``W ← (1 − ηλ) W`` then ``W ← W − η s · num / den`` in one
    ``addcdiv_``: one pass over memory and one temporary fewer than evaluating ``u`` and
    then ``W ← W − η u``. ``den``, ``scale`` (``s``) and ``decay`` (``λ``) may each be absent;
    ``scale`` holds one number per tensor, ``decay`` one number or one per tensor.

    ``chain`` evaluates it before handing it to a piece that reads updates, so a piece only
    ever receives a list, unless it declares ``takes_deferred``.
    """

    num: list[Tensor]
    den: list[Tensor] | None = None
    scale: list | None = None
    decay: float | list | None = None

    def evaluate(self, params: list[Tensor]) -> list[Tensor]:
        """``u`` as a list of new tensors (or ``num`` itself when it is all there is)."""
        u = self.num
        if self.den is not None:
            u = torch._foreach_div(u, self.den)
        if self.scale is not None:
            u = torch._foreach_mul(u, self.scale)
        if isinstance(self.decay, list):
            u = add(u, torch._foreach_mul(params, self.decay), 1.0)
        elif self.decay is not None:
            u = add(u, params, self.decay)
        return u

    def apply(self, params: list[Tensor], lr: float) -> None:
        """``W ← W − η u`` in place."""
        if isinstance(self.decay, list):
            torch._foreach_mul_(params, [1 - lr * d for d in self.decay])
        elif self.decay is not None:
            torch._foreach_mul_(params, 1 - lr * self.decay)
        if self.den is None:
            num = self.num if self.scale is None else torch._foreach_mul(self.num, self.scale)
            torch._foreach_add_(params, num, alpha=-lr)
        elif self.scale is None:
            torch._foreach_addcdiv_(params, self.num, self.den, value=-lr)
        else:
            torch._foreach_addcdiv_(params, self.num, self.den, [-lr * s for s in self.scale])


Updates = list[Tensor] | Deferred


class Transform(NamedTuple):
    init: Callable[[list[Tensor]], State]
    update: Callable[[list[Tensor], State, Context], Updates]
    after_step: Callable[[State, Context], None] | None = None
    takes_deferred: bool = False  # update accepts a Deferred (and passes it on or extends it)
    elementwise: bool = False  # each tensor's update depends on that tensor alone (not a global norm)


def apply_updates(params: list[Tensor], updates: Updates, lr: float) -> None:
    """``W ← W − η u``, in place."""
    if isinstance(updates, Deferred):
        updates.apply(params, lr)
    else:
        torch._foreach_add_(params, updates, alpha=-lr)


def keep(updates: Updates, state: State, ctx: Context) -> Updates:
    """The update of pieces that leave updates as they are."""
    return updates


def identity() -> Transform:
    """``u = g``: leaves updates unchanged (plain gradient descent with the optimizer's η)."""
    return Transform(lambda params: {}, keep, takes_deferred=True, elementwise=True)


def chain(*transforms: Transform) -> Transform:
    """Apply ``transforms`` one after the other; their state names must not collide."""
    for i, t in enumerate(transforms):
        if not isinstance(t, Transform):
            raise ReglabTypeError(
                f"chain: argument {i} must be a Transform (a piece such as scale_by_adam()), got {t!r} "
                f"({type(t).__name__})"
            )

    def init(params: list[Tensor]) -> State:
        state: State = {}
        for t in transforms:
            part = t.init(params)
            clash = set(part) & set(state)
            if clash:
                raise ReglabError(f"chain: two transforms keep state named {', '.join(sorted(clash))}")
            state.update(part)
        return state

    def update(updates: list[Tensor], state: State, ctx: Context) -> Updates:
        for t in transforms:
            if isinstance(updates, Deferred) and not t.takes_deferred:
                updates = updates.evaluate(ctx.params)
            updates = t.update(updates, state, ctx)
        return updates

    def after_step(state: State, ctx: Context) -> None:
        for t in transforms:
            if t.after_step is not None:
                t.after_step(state, ctx)

    has_after = any(t.after_step is not None for t in transforms)
    elementwise = all(t.elementwise for t in transforms)
    return Transform(init, update, after_step if has_after else None, takes_deferred=True, elementwise=elementwise)


def zeros_like(params: list[Tensor]) -> list[Tensor]:
    return [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]


def add(updates: list[Tensor], others: list[Tensor], alpha: float) -> list[Tensor]:
    """``updates + alpha * others`` as new tensors (the inputs may be gradients or state)."""
    return torch._foreach_add(updates, others, alpha=alpha)


def scale(factor: float) -> Transform:
    """``u ← factor · u``."""
    check_float("factor", factor)

    def update(updates, state, ctx):
        return torch._foreach_mul(updates, factor)

    return Transform(lambda params: {}, update, elementwise=True)


def scale_by_schedule(schedule: Callable[[int], float]) -> Transform:
    """``u ← s(t) · u`` with ``s`` a function of the step ``t`` (1, 2, ...): a step-size
    schedule inside a chain, for use with ``lr=1``."""
    check_schedule(schedule)

    def update(updates, state, ctx):
        return torch._foreach_mul(updates, ctx.per_step(schedule))

    return Transform(lambda params: {}, update, elementwise=True)


def as_real(tensors: list[Tensor]) -> list[Tensor]:
    """Complex tensors as real views with a trailing dimension of 2 (``torch.view_as_real``):
    as in torch.optim, a complex parameter is stepped as the pair of its real and imaginary
    parts (Adam's second moment holds ``Re(g)²`` and ``Im(g)²``, not the complex ``g²``;
    Adagrad's sum starts at ``v + v i``), while its state is kept complex, as torch.optim keeps it."""
    return [torch.view_as_real(t) if t.is_complex() else t for t in tensors]


def hyper_key(group: dict[str, Any]) -> tuple:
    """The group's hyperparameters other than ``params`` and ``lr``, as a hashable key: what a
    transform is built from. A value that cannot be hashed (a list), or a tensor (hashed by
    identity, so an in-place change would go unseen), enters by its ``repr``."""
    key = tuple([item for item in group.items() if item[0] != "params" and item[0] != "lr"])
    if any(isinstance(v, Tensor) for _, v in key) or not _hashable(key):
        key = tuple((k, repr(v) if isinstance(v, Tensor) or not _hashable(v) else v) for k, v in key)
    return key


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
