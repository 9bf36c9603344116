"""Momentum: heavy-ball and Nesterov (TECHNIQUES.md section 3)."""

from __future__ import annotations

import torch

from reglab._checks import check_bool, check_float
from reglab.optim.base import Context, State, Transform, zeros_like


def _check_momentum(momentum: float) -> None:
    check_float("momentum", momentum, low=0.0, high=1.0, high_open=True)


def trace(momentum: float = 0.9, dampening: float = 0.0, nesterov: bool = False) -> Transform:
    """Momentum accumulator ``a`` (PyTorch's ``momentum_buffer``):

        a ← β a + (1 − d) g        (a ← g on the first step, as in torch.optim.SGD)
        u = a                      heavy ball:  W ← W − η a
        u = g + β a                Nesterov, PyTorch form:  W ← W − η (g + β a)

    ``β = momentum``, ``d = dampening``. With d = 0 the heavy ball is the course's
    ``a ← β a + g ; W ← W − η a``. The course's look-ahead Nesterov form
    ``a ← β a + ∇L(W − η β a) ; W ← W − η a`` gives the same trajectory in the shifted
    variable ``W' = W − η β a`` (tests/optim/test_momentum.py shows it).
    """
    _check_momentum(momentum)
    check_float("dampening", dampening, low=0.0, high=1.0)
    check_bool("nesterov", nesterov)

    def init(params) -> State:
        return {"momentum": zeros_like(params)}  # a: running sum of past gradients

    def update(updates, state: State, ctx: Context):
        a = state["momentum"]  # 0 before the first step, so β·0 + g = g exactly at t = 1
        torch._foreach_mul_(a, momentum)
        if dampening == 0:
            torch._foreach_add_(a, updates)
        else:  # (1 - d) from the second step on
            torch._foreach_add_(a, torch._foreach_mul(updates, ctx.per_step(lambda t: 1 - dampening * (t > 1))))
        if nesterov:
            return torch._foreach_add(updates, a, alpha=momentum)
        return a

    return Transform(init, update, elementwise=True)


def trace_from_zero(momentum: float = 0.9) -> Transform:
    """``b ← β b + u ; u = b`` with ``b`` starting at 0 and no first-step rule (RMSprop's
    momentum buffer, applied to the already scaled step), ``β = momentum``."""
    _check_momentum(momentum)

    def init(params) -> State:
        return {"momentum": zeros_like(params)}  # b: running sum of scaled steps

    def update(updates, state: State, ctx: Context):
        b = state["momentum"]
        torch._foreach_mul_(b, momentum)
        torch._foreach_add_(b, updates)
        return b

    return Transform(init, update, elementwise=True)
