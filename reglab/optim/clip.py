"""Gradient clipping and gradient noise (TECHNIQUES.md section 6).

A piece sees the updates of one parameter group. ``clip_by_global_norm`` clips by the norm of
what it sees, unless it is given the norm to use: the named optimizers' ``clip_norm`` option
gives it the norm over every group of the optimizer, so that a model split into groups (weights
that decay, biases that do not) is clipped as a whole, as ``torch.nn.utils.clip_grad_norm_`` over
``model.parameters()`` clips it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reglab._checks import check_float, check_int
from reglab.errors import ReglabTypeError
from reglab.optim.base import Context, State, Transform


def global_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``‖g‖ = √(Σ g²)`` over all the tensors."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def clip_by_global_norm(max_norm: float, norm: Callable[[], torch.Tensor] | None = None) -> Transform:
    """``g ← g · c / ‖g‖`` when ``‖g‖ > c`` (``c = max_norm``); unchanged otherwise.

    ``‖g‖`` is the norm of the updates the piece receives, or ``norm()`` when given: a function
    returning this step's norm over more than this group (an optimizer's, over all its groups)."""
    check_float("max_norm", max_norm, low=0, low_open=True)
    if norm is not None and not callable(norm):
        raise ReglabTypeError(f"norm must be a function returning the step's gradient norm, got {norm!r}")

    def update(updates, state: State, ctx: Context):
        if norm is None:
            total = global_norm(updates)
        elif ctx.scalars is None:
            total = norm()
        else:  # fast mode: the norm enters the compiled step as one of its per-step numbers
            total = ctx.per_step(lambda t: float(norm()))[0]
        factor = torch.clamp(max_norm / total.to(updates[0].dtype), max=1.0)  # ‖g‖ = 0: c/0 = inf -> 1
        return torch._foreach_mul(updates, factor)

    return Transform(lambda params: {}, update)


def clip_by_value(clip_value: float) -> Transform:
    """``g ← clamp(g, −c, c)`` elementwise."""
    check_float("clip_value", clip_value, low=0, low_open=True)

    def update(updates, state: State, ctx: Context):
        clipped = torch._foreach_clamp_min(updates, -clip_value)
        torch._foreach_clamp_max_(clipped, clip_value)
        return clipped

    return Transform(lambda params: {}, update, elementwise=True)


def add_noise(eta: float = 0.01, gamma: float = 0.55, seed: int = 0) -> Transform:
    """Annealed Gaussian gradient noise (Neelakantan et al. 2015, arXiv:1511.06807):
    ``g ← g + N(0, σ_t²)``, ``σ_t² = η / (1 + t)^γ``.

    The noise of parameter ``i`` at step ``t`` is drawn from a generator seeded by
    ``(seed, t, i)``: it needs no state, so a resumed run draws the same noise.
    """
    check_float("eta", eta, low=0.0)
    check_float("gamma", gamma, low=0.0)
    check_int("seed", seed, low=0)

    def update(updates, state: State, ctx: Context):
        noisy = []
        for i, (g, t) in enumerate(zip(updates, ctx.steps)):
            gen = torch.Generator(device=g.device).manual_seed(hash((seed, int(t), i)) & (2**63 - 1))
            sigma = (eta / (1 + t) ** gamma) ** 0.5
            noisy.append(g + sigma * torch.randn(g.shape, generator=gen, device=g.device, dtype=g.dtype))
        return noisy

    return Transform(lambda params: {}, update)
