"""Noise robustness: Gaussian noise on inputs or on weights (TECHNIQUES.md section 6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from reglab._checks import check_float, check_floating, check_generator
from reglab.regularize.weights import weights

if TYPE_CHECKING:
    from reglab.train.loop import Trainer


def gaussian_noise(x: torch.Tensor, generator: torch.Generator, sigma: float = 0.1, p: float = 1.0) -> torch.Tensor:
    """``x + σ ε``, ``ε ~ N(0, 1)`` elementwise, for each sample chosen with probability ``p``."""
    check_float("sigma", sigma, low=0)
    check_float("p", p, low=0, high=1)
    check_generator(generator)
    check_floating("gaussian_noise", x)
    eps = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    if p < 1:
        chosen = torch.rand(len(x), generator=generator, device=generator.device).to(x.device) < p
        eps = eps * chosen.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.add(x, eps, alpha=sigma)


class InputNoise:
    """Batch transform adding Gaussian noise of std ``sigma`` to training inputs."""

    def __init__(self, sigma: float) -> None:
        self.sigma = check_float("InputNoise sigma", sigma, low=0)

    def __call__(self, x, y, generator):
        return gaussian_noise(x, generator, self.sigma), y


class WeightNoise:
    """Callback: perturb the weights (``reglab.regularize.weights``) by ``N(0, σ²)`` for the forward and backward
    pass of each training step and restore them before the optimizer step, so that the
    gradient is taken at ``W + σε`` and applied to ``W`` (noise injection on weights)."""

    def __init__(self, sigma: float) -> None:
        self.sigma = check_float("WeightNoise sigma", sigma, low=0)
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    # A callback by duck typing: the training loop calls the per-step hooks it finds here.
    @torch.no_grad()
    def on_batch_begin(self, trainer: Trainer) -> None:
        self._saved = []
        for w in weights(trainer.model):
            noise = torch.randn(
                w.shape, generator=trainer.generator, device=trainer.generator.device, dtype=w.dtype
            ).to(w.device)
            self._saved.append((w, w.detach().clone()))
            w.add_(noise, alpha=self.sigma)

    @torch.no_grad()
    def on_after_backward(self, trainer: Trainer) -> None:
        for w, clean in self._saved:
            w.copy_(clean)
        self._saved = []
