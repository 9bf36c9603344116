"""reglab.augment: batched augmentations, erasing, mixing and soft targets.

Every function takes a whole batch and an explicit ``torch.Generator`` and runs on the
batch's device; label-side operations return soft targets ``(N, K)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from reglab.augment.erase import cutout, erase
from reglab.augment.geometric import flip, rotate, scale, shift, translate
from reglab.augment.mixing import Mixing, box_mask, cutmix, mixup, sample_beta
from reglab.augment.targets import LabelSmoothing, one_hot, smooth_labels, soft_cross_entropy
from reglab.errors import ReglabError
from reglab.registry import Registry

# Label-preserving augmentations ``fn(x, generator) -> x`` of a batch (signals (N, C, L) or
# images (N, C, H, W)), that a recipe names in ``augment.extra``. The built-in ones take their
# strengths from the recipe's augment fields (``Augment``); register your own with
# ``register_augmentation``, or name one by its import path ``"package.module:function"``.
AUGMENTATIONS: Registry[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = Registry(
    "augmentation", {}, open=True, arity=2, arguments="x, generator"
)


def register_augmentation(
    name: str, fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor], *, replace: bool = False
) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Make ``fn(x, generator) -> x`` an augmentation that a recipe can name in ``augment.extra``
    (applied to training batches after the built-in ones, with the run's generator). Returns ``fn``."""
    if not callable(fn):
        raise ReglabError(f"register_augmentation: fn must be a function (x, generator) -> x; got {fn!r}")
    AUGMENTATIONS.register(name, fn, replace=replace)
    return fn


class Augment:
    """Batch transform applying the label-preserving augmentations of a recipe's augment
    section, in the order flip, vertical flip, shift, rotate, scale, Cutout, random erasing, then
    the ``extra`` ones (``AUGMENTATIONS``) in their order."""

    def __init__(self, config: Any, input_shape: tuple[int, ...]) -> None:
        """``config``: a recipe's augment section (any object with its fields)."""
        rank = len(input_shape) + 1
        if rank not in (3, 4):
            raise ReglabError(
                "augmentations need signals (C, L) or images (C, H, W); this data set's samples have shape "
                f"{input_shape}"
            )
        image_only = [name for name in ("vflip", "rotate") if getattr(config, name)]
        if image_only and rank != 4:
            raise ReglabError(
                f"augment.{image_only[0]} needs images (C, H, W); this data set's samples have shape {input_shape}"
            )
        c, sides = config, input_shape[1:]
        if c.shift >= min(sides):
            raise ReglabError(
                f"augment.shift = {c.shift} must be smaller than the samples' side ({'x'.join(map(str, sides))}): "
                "larger shifts move whole samples out"
            )
        if c.cutout > max(sides):
            raise ReglabError(
                f"augment.cutout = {c.cutout} is larger than the samples ({'x'.join(map(str, sides))}): it would "
                "erase them whole"
            )
        steps = []
        if c.flip:
            steps.append(lambda x, g: flip(x, g, p=c.flip))
        if c.vflip:
            steps.append(lambda x, g: flip(x, g, p=c.vflip, dim=-2))
        if c.shift:
            steps.append(lambda x, g: shift(x, g, max_shift=c.shift, p=c.p, mode=c.shift_mode))
        if c.rotate:
            steps.append(lambda x, g: rotate(x, g, degrees=c.rotate, p=c.p))
        if c.scale:
            steps.append(lambda x, g: scale(x, g, low=1 - c.scale, high=1 + c.scale, p=c.p))
        if c.cutout:
            steps.append(lambda x, g: cutout(x, g, size=c.cutout, p=c.p))
        if c.erase:
            steps.append(lambda x, g: erase(x, g, p=c.erase, count=c.erase_count, area=tuple(c.erase_area)))
        steps += [AUGMENTATIONS[name] for name in getattr(c, "extra", ())]
        self.steps = steps

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        for step in self.steps:
            x = step(x, generator)
        return x, y


__all__ = [
    "AUGMENTATIONS",
    "Augment",
    "register_augmentation",
    "LabelSmoothing",
    "Mixing",
    "box_mask",
    "cutmix",
    "cutout",
    "erase",
    "flip",
    "mixup",
    "one_hot",
    "rotate",
    "sample_beta",
    "scale",
    "shift",
    "smooth_labels",
    "soft_cross_entropy",
    "translate",
]
