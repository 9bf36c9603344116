"""reglab.augment: batched augmentations, erasing, mixing and soft targets.

Every function takes a whole batch and an explicit ``torch.Generator`` and runs on the
batch's device; label-side operations return soft targets ``(N, K)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from reglab.augment.erase import cutout, erase
from reglab.augment.geometric import flip, rotate, scale, shift, translate
from reglab.augment.mixing import Mixing, box_mask, cutmix, mixup, sample_beta
from reglab.augment.targets import LabelSmoothing, one_hot, smooth_labels, soft_cross_entropy

if TYPE_CHECKING:
    from reglab.recipe import AugmentConfig


class Augment:
    """Batch transform applying the label-preserving augmentations of an ``AugmentConfig``, in
    the order flip, vertical flip, shift, rotate, scale, Cutout, random erasing."""

    def __init__(self, config: AugmentConfig, input_shape: tuple[int, ...]) -> None:
        rank = len(input_shape) + 1
        if rank not in (3, 4):
            raise ValueError(
                f"augmentations need signals (C, L) or images (C, H, W); this data set's samples have shape {input_shape}"
            )
        image_only = [name for name in ("vflip", "rotate") if getattr(config, name)]
        if image_only and rank != 4:
            raise ValueError(
                f"augment.{image_only[0]} needs images (C, H, W); this data set's samples have shape {input_shape}"
            )
        c, sides = config, input_shape[1:]
        if c.shift >= min(sides):
            raise ValueError(
                f"augment.shift = {c.shift} must be smaller than the samples' side ({'x'.join(map(str, sides))}): larger shifts move whole samples out"
            )
        if c.cutout > max(sides):
            raise ValueError(
                f"augment.cutout = {c.cutout} is larger than the samples ({'x'.join(map(str, sides))}): it would erase them whole"
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
        self.steps = steps

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        for step in self.steps:
            x = step(x, generator)
        return x, y


__all__ = [
    "Augment",
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
