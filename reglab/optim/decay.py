"""Weight decay and L1 (TECHNIQUES.md section 4).

Coupled L2 and decoupled weight decay are the same piece, ``add_decayed_weights``, standing
at a different place in the chain (DESIGN.md, style point 2):

- first, before any gradient scaling, it adds the gradient of ``(λ/2)‖W‖²`` to ``g``:
  coupled L2, torch.optim's ``weight_decay``. For plain SGD this equals the loss penalty;
- last, after the scaling (Adam's moments, ...), it gives ``W ← W − η (u + λ W)``: decoupled
  weight decay (Loshchilov & Hutter, arXiv:1711.05101), AdamW's rule, for any optimizer.

The loss penalty ``λ‖W‖²`` (no 1/2) has gradient ``2λW``: SGD weight decay ``λ' = 2λ`` equals it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from reglab._checks import check_float, check_module, check_schedule, check_str
from reglab.errors import ReglabError, ReglabTypeError
from reglab.optim.base import Context, Deferred, State, Transform, add, keep
from reglab.regularize.weights import is_weight


def add_decayed_weights(weight_decay: float, schedule: Callable[[int], float] | None = None) -> Transform:
    """``u ← u + λ W``, with ``λ = weight_decay · schedule(t)`` when a schedule is given.

    The sum is deferred: the optimizer applies it as ``W ← (1 − ηλ) W`` followed by the rest
    of the update (torch.optim.AdamW's passes); a following piece gets it evaluated."""
    check_float("weight_decay", weight_decay, low=0)
    if schedule is not None:
        check_schedule(schedule)

    def update(updates, state: State, ctx: Context):
        decay = weight_decay if schedule is None else ctx.per_step(lambda t: weight_decay * schedule(t))
        if isinstance(updates, Deferred) and updates.decay is None:
            return updates._replace(decay=decay)
        if isinstance(updates, Deferred):  # a second decay: evaluate the first
            updates = updates.evaluate(ctx.params)
        return Deferred(updates, decay=decay)

    return Transform(lambda params: {}, update, takes_deferred=True, elementwise=True)


def add_l1(alpha: float) -> Transform:
    """L1 penalty ``α‖W‖₁`` as a subgradient: ``u ← u + α sign(W)``. Weights hover around 0
    but rarely reach it exactly; see ``prox_l1`` for exact zeros."""
    check_float("alpha", alpha, low=0)

    def update(updates, state: State, ctx: Context):
        return add(updates, torch._foreach_sign(ctx.params), alpha)

    return Transform(lambda params: {}, update, elementwise=True)


def prox_l1(alpha: float) -> Transform:
    """Proximal step of ``α‖W‖₁`` after each update (soft thresholding, ISTA):

        W ← sign(W) · max(|W| − η α, 0)

    with η the group's learning rate. Weights within ``ηα`` of 0 become exactly 0.0.
    Computed as ``W ← W − clip(W, −ηα, ηα)``: the same numbers in two passes instead of five
    (``W − W`` is exactly 0; elsewhere ``W ∓ ηα`` is ``sign(W)(|W| − ηα)``). One ``clamp`` per
    tensor rather than ``_foreach_clamp_min``, which inductor compiles with the threshold
    rounded to float32 when it is a tensor (as the fast mode's learning rate is).
    """
    check_float("alpha", alpha, low=0)

    def after_step(state: State, ctx: Context) -> None:
        soft_threshold_(ctx.params, ctx.group["lr"] * alpha)

    return Transform(lambda params: {}, keep, after_step, takes_deferred=True, elementwise=True)


def soft_threshold_(params: Sequence[torch.Tensor], threshold: float) -> None:
    """``W ← sign(W) · max(|W| − threshold, 0)`` in place, as ``W − clip(W, −threshold, threshold)``
    (``prox_l1``'s step; the kernel path takes it after its fused update, kernels.py)."""
    for w in params:
        w.sub_(w.clamp(-threshold, threshold))


def decay_groups(model: torch.nn.Module, weight_decay: float, exclude: str | Sequence[str] = ()) -> list[dict]:
    """Split ``model``'s trainable parameters into two optimizer groups: weights that decay
    (``weight_decay``) and those that do not (``0``): biases, normalization parameters (the rule
    of ``reglab.regularize.weights``), and any parameter whose name contains one of ``exclude``.

    ``exclude`` is a name or a sequence of names; each must be part of some parameter's name.

    >>> opt = AdamW(decay_groups(model, 0.05, exclude=("embedding",)), lr=1e-3)  # doctest: +SKIP
    """
    check_module("decay_groups", model)
    check_float("weight_decay", weight_decay, low=0)
    if not isinstance(exclude, (str, Sequence)):
        raise ReglabTypeError(
            f"exclude must be a name or a sequence of names, got {exclude!r} ({type(exclude).__name__})"
        )
    exclude = (exclude,) if isinstance(exclude, str) else tuple(check_str("exclude[]", e) for e in exclude)
    decay, no_decay, names = [], [], []
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            names.append(full)
            if not p.requires_grad:
                continue
            skip = not is_weight(module, name) or any(e in full for e in exclude)
            (no_decay if skip else decay).append(p)
    unmatched = [e for e in exclude if not any(e in n for n in names)]
    if unmatched:  # a typo would silently decay what was meant to be spared
        raise ReglabError(f"exclude: {unmatched[0]!r} is in no parameter's name ({', '.join(names)})")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
