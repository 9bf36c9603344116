"""Partial erasing: Cutout and random erasing, batched (TECHNIQUES.md sections 6-7).

- ``cutout`` (DeVries & Taylor, arXiv:1708.04552): zero a square (images) or segment
  (signals) of side ``size`` centered uniformly at random, clipped at the border.
- ``erase`` (random erasing, Zhong et al. 2017): ``count`` boxes per chosen sample, each of
  area fraction ``~ U[area]`` and aspect ratio ``~ logU[aspect]`` (images), placed fully
  inside the sample, filled with ``value``.
"""

from __future__ import annotations

import math

import torch

from reglab._checks import check_float, check_int
from reglab.augment.geometric import _check_common, _check_rank, _chosen, _uniform
from reglab.errors import ReglabError


def _box(lo: torch.Tensor, hi: torch.Tensor, size: int, axis: int, ndim: int) -> torch.Tensor:
    """Mask, broadcastable to (N, C, *spatial), of positions lo <= i < hi along ``axis``."""
    coords = torch.arange(size, device=lo.device)
    inside = (coords[None, :] >= lo[:, None]) & (coords[None, :] < hi[:, None])
    view = [len(lo)] + [1] * (ndim - 1)
    view[axis] = size
    return inside.reshape(view)


def cutout(
    x: torch.Tensor, generator: torch.Generator, size: int = 8, p: float = 1.0, value: float = 0.0
) -> torch.Tensor:
    """Fill a box of side ``size`` (clipped at the border) with ``value`` in each chosen sample."""
    _check_common(p, generator)
    check_float("value", value)
    _check_rank(x, (3, 4), "cutout")
    check_int("size", size, low=1)
    if size > max(x.shape[2:]):
        raise ReglabError(f"size = {size} is larger than the samples ({'x'.join(map(str, x.shape[2:]))})")
    mask = _chosen(x, generator, p)
    for axis in range(2, x.ndim):
        extent = x.shape[axis]
        center = torch.randint(0, extent, (len(x),), generator=generator, device=generator.device).to(x.device)
        mask = mask & _box(center - size // 2, center - size // 2 + size, extent, axis, x.ndim)
    return torch.where(mask, torch.full_like(x, value), x)


def erase(
    x: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    count: int = 1,
    area: tuple[float, float] = (0.02, 0.2),
    aspect: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
) -> torch.Tensor:
    """Random erasing: ``count`` boxes per chosen sample, each covering a fraction ``~ U[area]``
    of it (aspect ratio ``~ logU[aspect]`` for images), filled with ``value``."""
    _check_common(p, generator)
    check_float("value", value)
    _check_rank(x, (3, 4), "erase")
    check_int("count", count, low=1)
    lo_a = check_float("area[0]", area[0], low=0, high=1, low_open=True)
    hi_a = check_float("area[1]", area[1], low=lo_a, high=1)
    lo_r = check_float("aspect[0]", aspect[0], low=0, low_open=True)
    hi_r = check_float("aspect[1]", aspect[1], low=lo_r)
    n, spatial = len(x), x.shape[2:]
    erased = torch.zeros_like(x, dtype=torch.bool)
    for _ in range(count):
        frac = _uniform(n, lo_a, hi_a, generator, x.device)
        if len(spatial) == 1:
            lengths = [(frac * spatial[0]).round().clamp(1, spatial[0]).long()]
        else:
            ratio = torch.exp(_uniform(n, math.log(lo_r), math.log(hi_r), generator, x.device))
            cells = frac * spatial[0] * spatial[1]
            lengths = [
                torch.sqrt(cells * ratio).round().clamp(1, spatial[0]).long(),
                torch.sqrt(cells / ratio).round().clamp(1, spatial[1]).long(),
            ]
        box = torch.ones_like(erased[:, :1])
        for axis, (extent, length) in enumerate(zip(spatial, lengths), start=2):
            start = (
                (torch.rand(n, generator=generator, device=generator.device).to(x.device) * (extent - length + 1))
                .floor()
                .long()
            )
            box = box & _box(start, start + length, extent, axis, x.ndim)
        erased |= box
    return torch.where(erased & _chosen(x, generator, p), torch.full_like(x, value), x)
