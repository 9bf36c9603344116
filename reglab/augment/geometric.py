"""Label-preserving geometric augmentations, batched (TECHNIQUES.md section 6).

Each is a function ``(x, generator, ..., p) -> x`` on a whole batch, on the batch's device:
every sample is transformed with probability ``p`` (a mask and ``torch.where``, no Python
loop), with random parameters drawn from ``generator``. Signals are ``(N, C, L)``, images
``(N, C, H, W)``; shapes, dtypes and devices are kept. ``flip`` and ``shift`` take any dtype
(uint8 images included); ``rotate`` and ``scale`` interpolate and need floating-point inputs.

- ``flip``: mirror along the last axis (horizontal) or ``dim=-2`` (vertical, images).
- ``shift``: translate by an integer offset in ``[−max_shift, max_shift]`` per axis, either
  circularly (``mode="circular"``) or filling with zeros (``"zeros"``: random crop of a
  zero-padded sample).
- ``rotate``: rotate images by an angle in ``[−degrees, degrees]`` (bilinear, zero fill).
- ``scale``: zoom by a factor in ``[low, high]`` about the center (bilinear, zero fill);
  signals are stretched along their length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reglab._checks import check_choice, check_float, check_floating, check_generator, check_int, check_tensor
from reglab.errors import ReglabError


def _check_common(p: float, generator: torch.Generator) -> None:
    check_float("p", p, low=0, high=1)
    check_generator(generator)


def _check_rank(x: torch.Tensor, ranks: tuple[int, ...], name: str) -> None:
    check_tensor(name, "x", x)
    if x.ndim not in ranks:
        want = " or ".join({3: "(N, C, L)", 4: "(N, C, H, W)"}[r] for r in ranks)
        raise ReglabError(f"{name} needs inputs of shape {want}, got {tuple(x.shape)}")


def _chosen(x: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    """Per-sample Bernoulli(p) mask, broadcastable against ``x``."""
    u = torch.rand(len(x), generator=generator, device=generator.device).to(x.device)
    return (u < p).reshape(-1, *([1] * (x.ndim - 1)))


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return (low + (high - low) * torch.rand(n, generator=generator, device=generator.device)).to(device)


def flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5, dim: int = -1) -> torch.Tensor:
    """Mirror each chosen sample along ``dim`` (-1: horizontal, -2: vertical)."""
    _check_common(p, generator)
    _check_rank(x, (3, 4), "flip")
    if dim not in (-1, -2) or (dim == -2 and x.ndim != 4):
        raise ReglabError(f"flip dim must be -1, or -2 for images; got {dim}")
    return torch.where(_chosen(x, generator, p), x.flip(dim), x)


def translate(x: torch.Tensor, offsets: list[torch.Tensor], mode: str = "zeros") -> torch.Tensor:
    """Move sample ``i`` by ``offsets[a][i]`` positions along spatial axis ``a``:
    ``out[..., j] = x[..., j − k]``, circularly or with zeros where ``j − k`` falls outside.

    One ``gather`` per axis. With zeros, it reads from a copy padded with one zero at each end
    (position ``j − k + 1``, clamped to the padding): no mask, no remainder."""
    check_choice("mode", mode, ("circular", "zeros"))
    n, out = len(x), x
    for axis, k in zip(range(2, x.ndim), offsets):
        size = x.shape[axis]
        k = k.to(x.device)[:, None]
        if mode == "circular":
            index = (torch.arange(size, device=x.device) - k) % size
            source = out
        else:
            index = (torch.arange(1, size + 1, device=x.device) - k).clamp_(0, size + 1)
            source = F.pad(out, [0, 0] * (x.ndim - 1 - axis) + [1, 1])
        view = [n] + [1] * (x.ndim - 1)
        view[axis] = size
        out = torch.gather(source, axis, index.reshape(view).expand(out.shape))
    return out


def shift(
    x: torch.Tensor, generator: torch.Generator, max_shift: int = 4, p: float = 1.0, mode: str = "zeros"
) -> torch.Tensor:
    """Translate each chosen sample by ``k ~ U{−max_shift..max_shift}`` along every spatial
    axis (circular: indices mod size; zeros: 0 where nothing moved in)."""
    _check_common(p, generator)
    _check_rank(x, (3, 4), "shift")
    check_int("max_shift", max_shift, low=0)
    check_choice("mode", mode, ("circular", "zeros"))
    if max_shift >= min(x.shape[2:]):  # zeros: whole samples moved out; circular: no more than a smaller shift
        raise ReglabError(
            f"max_shift = {max_shift} must be smaller than the samples' side ({'x'.join(map(str, x.shape[2:]))})"
        )
    offsets = [
        torch.randint(-max_shift, max_shift + 1, (len(x),), generator=generator, device=generator.device)
        for _ in x.shape[2:]
    ]
    moved = translate(x, offsets, mode)
    return moved if p == 1 else torch.where(_chosen(x, generator, p), moved, x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample images ``(N, C, H, W)`` with per-sample 2x3 matrices (bilinear, zero fill)."""
    if len(x) == 0:  # affine_grid refuses an empty batch
        return x.clone()
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate(x: torch.Tensor, generator: torch.Generator, degrees: float = 15.0, p: float = 1.0) -> torch.Tensor:
    """Rotate each chosen image by an angle ``~ U[−degrees, degrees]`` about its center."""
    _check_common(p, generator)
    _check_rank(x, (4,), "rotate")
    check_floating("rotate", x)
    check_float("degrees", degrees, low=0, high=180)
    angle = _uniform(len(x), -degrees, degrees, generator, x.device) * math.pi / 180
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return torch.where(_chosen(x, generator, p), _affine(x, theta), x)


def scale(
    x: torch.Tensor, generator: torch.Generator, low: float = 0.9, high: float = 1.1, p: float = 1.0
) -> torch.Tensor:
    """Zoom each chosen sample by ``s ~ U[low, high]`` about its center (``s > 1`` enlarges)."""
    _check_common(p, generator)
    _check_rank(x, (3, 4), "scale")
    check_floating("scale", x)
    check_float("low", low, low=0, low_open=True)
    check_float("high", high, low=low)
    s = _uniform(len(x), low, high, generator, x.device)
    zero = torch.zeros_like(s)
    if x.ndim == 3:  # a signal: a one-pixel-high image, stretched along its length
        theta = torch.stack([torch.stack([1 / s, zero, zero], 1), torch.stack([zero, torch.ones_like(s), zero], 1)], 1)
        return torch.where(_chosen(x, generator, p), _affine(x.unsqueeze(2), theta).squeeze(2), x)
    theta = torch.stack([torch.stack([1 / s, zero, zero], 1), torch.stack([zero, 1 / s, zero], 1)], 1)
    return torch.where(_chosen(x, generator, p), _affine(x, theta), x)
