"""Dropout (TECHNIQUES.md 8): in training each unit is zeroed with probability p and the
survivors are scaled by 1/(1 − p), so that E[y] = x; in evaluation nothing is dropped.

On CPU the mask is drawn by ``dropout_mask``: u ~ U[0, 1) in float32 (24 random bits a unit,
from the default generator or a given one), a unit kept where u ≥ p, so P(drop) = p to 2⁻²⁴.
``F.dropout``'s mask on CPU is a ``bernoulli_``, which costs about twice as much for the mlp's
(100, 256) activations (BENCHMARKS.md); off the CPU ``Dropout`` is ``F.dropout`` (one fused kernel).
"""

from __future__ import annotations

import torch
from torch import nn


def dropout_mask(
    x: torch.Tensor, p: float, generator: torch.Generator | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The mask of ``x``'s units in x's dtype: 1/(1 − p) where u ≥ p, 0 where u < p, with u drawn
    uniform in [0, 1) in float32 from ``generator`` (default: the global one), in x's memory
    order (``out``: a float32 tensor of x's shape to draw into; each slice of a stacked mask
    drawn from its copy's generator gives that copy's own mask, ``reglab.train.stacked_model``).
    Drawn in float32 whatever x's dtype (bf16 has 8 bits: p would be rounded to 1/256)."""
    u = torch.empty(x.shape, device=x.device) if out is None else out
    if out is None:
        u.uniform_(generator=generator)
    return u.ge_(p).to(x.dtype).div_(1 - p)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask on CPU is ``dropout_mask``'s (the default generator's
    uniforms); off the CPU, in evaluation and with p = 0 or 1, exactly ``nn.Dropout``.

    >>> drop = Dropout(0.2)  # in a model: y = x · 1[u ≥ 0.2] / 0.8 while training
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p in (0, 1) or x.device.type != "cpu":
            return super().forward(x)
        mask = dropout_mask(x, self.p)
        return x.mul_(mask) if self.inplace else x * mask
