"""The kernel path: a whole parameter group stepped by one of PyTorch's fused kernels, where
the group's options are exactly what that kernel computes.

The readable implementation (a chain of pieces on lists of tensors, optimizer.py) is the
definition of every update rule and stays the reference: the kernel path is taken only for a
group whose chain the kernel computes term for term, and tests/optim/test_kernels.py checks
it against the chain. For Adam with PyTorch's own options (β₁, β₂, ε, coupled weight decay,
amsgrad, maximize),

    m ← β₁ m + (1 − β₁) g ;  v ← β₂ v + (1 − β₂) g²
    W ← W − η m̂ / (√v̂ + ε)                       (m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ))

with coupled decay ``g ← g + λW``, is ``torch._fused_adam_``: one pass over memory for the
whole group instead of ~12 ``_foreach`` passes, and no per-parameter Python. A step through the
chain of a small model costs about twice a ``torch.optim.Adam(fused=True)`` step; this path
costs less than one (BENCHMARKS.md). For SGD with PyTorch's options and no dampening,

    a ← β a + g ;  u = a  (or g + β a, Nesterov) ;  W ← W − η u        (g ← g + λW coupled)

it is ``torch._fused_sgd_``. Either kernel is followed, for ``l1_proximal = α``, by the chain's
own proximal step on the updated weights, ``W ← sign(W) max(|W| − ηα, 0)``.

What the kernel does not compute takes the chain: decoupled weight decay (AdamW's kernel
multiplies W by (1 − ηλ) rounded to the parameters' precision: in float32 a 0.3% error in the
decay at ηλ = 1e-5, where the chain's ``W − η(u + λW)`` is exact to rounding of the step),
the course's forms (``eps_in_sqrt``, ``bias_correction=False``), clipping, the L1
subgradient, a weight-decay schedule, complex or sparse parameters, a group in which some
parameter has no gradient, parameters of several dtypes or devices. Per-parameter state
lives where the chain keeps it (``mu``, ``nu``, ``nu_max``) and ``state[p]["step"]`` holds a
one-element float tensor (as in torch.optim), so ``state_dict`` / ``load_state_dict`` and a
switch between the paths work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from reglab.optim.decay import soft_threshold_

Kernel = Callable[..., None]


def _chain_only(group: dict[str, Any]) -> bool:
    """Options of every named optimizer that no fused kernel computes: decoupled decay,
    clipping, the L1 subgradient, a weight-decay schedule. (The proximal L1 step comes after
    the update, ``_then_prox``.)"""
    return bool(
        (group["decoupled"] and group["weight_decay"])
        or group["clip_norm"] is not None
        or group["clip_value"] is not None
        or group["l1"]
        or group["weight_decay_schedule"] is not None
    )


def _then_prox(run: Kernel, alpha: float) -> Kernel:
    """``run``, then the chain's last piece for ``l1_proximal = α``: ``W ← sign(W) max(|W| − ηα, 0)``
    on the updated weights (``prox_l1``, the same two passes per tensor)."""
    if not alpha:
        return run

    def with_prox(params: list[Tensor], grads: list[Tensor], lists: dict[str, list[Tensor]], steps, lr: float) -> None:
        run(params, grads, lists, steps, lr)
        soft_threshold_(params, lr * alpha)

    return with_prox


def adam_kernel(group: dict[str, Any]) -> Kernel | None:
    """A step of ``torch._fused_adam_`` for an Adam group with only PyTorch's options and no
    decoupled decay, ``run(params, grads, state_lists, steps, lr)``; else None."""
    if _chain_only(group) or group.get("eps_in_sqrt") or not group.get("bias_correction", True):
        return None
    (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
    amsgrad, maximize = group["amsgrad"], group["maximize"]

    def run(params: list[Tensor], grads: list[Tensor], lists: dict[str, list[Tensor]], steps, lr: float) -> None:
        torch._fused_adam_(
            params, grads, lists["mu"], lists["nu"], lists.get("nu_max", []), steps,
            lr=lr, beta1=b1, beta2=b2, weight_decay=wd, eps=eps, amsgrad=amsgrad, maximize=maximize,
        )  # fmt: skip

    return _then_prox(run, group["l1_proximal"])


def sgd_kernel(group: dict[str, Any]) -> Kernel | None:
    """A step of ``torch._fused_sgd_`` for an SGD group with only PyTorch's options and no
    dampening, ``run(params, grads, state_lists, steps, lr)``; else None. The chain's
    ``a ← β a + g`` from a zero buffer is ``a = g`` at the first step, as the kernel's
    ``a ← β a + g`` is without its first-step flag; with dampening d > 0 the first step is
    ``a = g`` and the later ones ``(1 − d) g``, a per-parameter rule that stays with the chain."""
    if _chain_only(group) or group["dampening"] or not hasattr(torch, "_fused_sgd_"):
        return None
    momentum, wd, nesterov, maximize = group["momentum"], group["weight_decay"], group["nesterov"], group["maximize"]

    def run(params: list[Tensor], grads: list[Tensor], lists: dict[str, list[Tensor]], steps, lr: float) -> None:
        torch._fused_sgd_(
            params, grads, lists.get("momentum", []), weight_decay=wd, momentum=momentum, lr=lr, dampening=0.0,
            nesterov=nesterov, maximize=maximize, is_first_step=False,
        )  # fmt: skip

    return _then_prox(run, group["l1_proximal"])


class KernelGroup:
    """One parameter group's tensors as the kernel takes them: lists kept from step to step
    and checked, each step, to be the ones the optimizer's state holds (a ``load_state_dict``
    or a step through the chain replaces them)."""

    def __init__(self, params: list[Tensor], state: dict[Tensor, dict[str, Any]], names: tuple[str, ...]) -> None:
        self.params = params
        self.steps = [torch.full((), float(state[p]["step"]), dtype=torch.float32, device=p.device) for p in params]
        for p, step in zip(params, self.steps):
            state[p]["step"] = step
        self.lists = {name: [state[p][name] for p in params] for name in names}
        self.arrays = [t.numpy() for t in self.steps] if params[0].device.type == "cpu" else None
        self.dtype, self.device = params[0].dtype, params[0].device
        # the state as the kernel needs it: each tensor in its parameter's dtype, on its device
        self.usable = all(t.dtype == self.dtype and t.device == self.device for ts in self.lists.values() for t in ts)

    def current(self, params: list[Tensor], state: dict[Tensor, dict[str, Any]]) -> bool:
        """Whether these lists are still the group's parameters and state: the same parameters,
        each with the step tensor made here (a ``load_state_dict``, a step through the chain or
        a cleared state replaces it, and with it the rest of the parameter's state)."""
        if len(params) != len(self.params) or params[0].dtype != self.dtype or params[0].device != self.device:
            return False
        for p, mine, step in zip(params, self.params, self.steps):
            if p is not mine or state[p].get("step") is not step:
                return False
        return True

    def count(self) -> None:
        """``t ← t + 1`` for every parameter (before the kernel reads it); on CPU written through
        NumPy, ~0.2 µs a tensor where a tensor op costs several."""
        if self.arrays is None:
            torch._foreach_add_(self.steps, 1)
            return
        for a in self.arrays:
            a += 1


def kernel_ready(params: list[Tensor]) -> bool:
    """Every parameter has a dense gradient, and all share one floating dtype and device."""
    first = params[0]
    if first.is_complex() or not first.is_floating_point():
        return False
    for p in params:
        g = p.grad
        if g is None or g.is_sparse or p.dtype != first.dtype or p.device != first.device or g.dtype != p.dtype:
            return False
    return True
