"""Sample mixing: Mixup and CutMix on whole batches (TECHNIQUES.md section 7).

- Mixup (Zhang et al., arXiv:1710.09412): ``λ ~ Beta(α, α)``, ``x = λ xᵢ + (1 − λ) xⱼ``,
  ``y = λ yᵢ + (1 − λ) yⱼ``.
- CutMix (Yun et al., arXiv:1905.04899): a box of area ``(1 − λ)·H·W`` (side ratio
  ``√(1 − λ)``, center uniform) from ``xⱼ`` is pasted into ``xᵢ``; the box is clipped to the
  image and the label weight of ``yᵢ`` is the area actually kept, ``1 − box/(H·W)``. For 1-D
  signals the box is a segment of length ``(1 − λ)·L``.

``j`` is a random permutation of the batch. ``mode="batch"`` draws one λ (and one box) per
batch, ``mode="elem"`` one per sample. Any batch size works, 1 included (then ``j = i``).
Labels come back as soft targets ``(N, K)``.
"""

from __future__ import annotations

import numpy as np
import torch

from reglab._checks import check_choice, check_float, check_floating, check_generator, check_int, check_tensor
from reglab.augment.targets import one_hot
from reglab.errors import ReglabError


def sample_beta(alpha: float, n: int, generator: torch.Generator) -> np.ndarray:
    """``n`` draws of Beta(α, α), reproducible from the torch generator (torch's own Beta
    sampler takes no generator; NumPy's does)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return np.random.default_rng(seed).beta(alpha, alpha, size=n)


def _check(alpha: float, mode: str, generator: torch.Generator) -> None:
    check_float("alpha", alpha, low=0, low_open=True)
    check_choice("mode", mode, ("batch", "elem"))
    check_generator(generator)


def _check_batch(who: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """Inputs and labels are tensors of one batch: as many labels as samples."""
    check_tensor(who, "x", x)
    check_tensor(who, "y", y)
    if x.ndim == 0 or len(x) != len(y):
        raise ReglabError(
            f"{who}: x and y must hold one batch, as many labels as samples; got x of shape {tuple(x.shape)} and y of "
            f"shape {tuple(y.shape)}"
        )


def _target_dtype(x: torch.Tensor) -> torch.dtype:
    """Soft targets take the inputs' float dtype (float16 under autocast, float64 in tests), or
    the default dtype for integer inputs: label weights are fractions."""
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def _partners(n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def mixup(x, y, generator, *, alpha: float = 0.2, num_classes: int, mode: str = "batch"):
    """Mixup of a batch; returns mixed inputs and soft targets. Inputs must be floating point
    (a blend of two integer images is not an integer image)."""
    _check(alpha, mode, generator)
    _check_batch("mixup", x, y)
    return _mixup(x, y, generator, alpha, num_classes, mode)


def _mixup(x, y, generator, alpha: float, num_classes: int, mode: str):
    """``mixup`` with its hyperparameters already checked (by ``mixup`` or ``Mixing``)."""
    check_floating("mixup", x)
    n = len(x)
    lam = sample_beta(alpha, 1 if mode == "batch" else n, generator)
    j = _partners(n, generator, x.device)
    lam_t = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    lam_x = lam_t.reshape(-1, *([1] * (x.ndim - 1)))
    targets = one_hot(y, num_classes).to(x.dtype)
    lam_y = lam_t.reshape(-1, 1)
    return lam_x * x + (1 - lam_x) * x[j], lam_y * targets + (1 - lam_y) * targets[j]


def box_mask(shape: tuple[int, ...], lam: np.ndarray, generator: torch.Generator, device) -> torch.Tensor:
    """Boolean masks ``(N, *spatial)``: True inside a box of area ≈ ``(1 − λ)`` of the
    sample, centered uniformly at random and clipped at the border."""
    spatial = shape[2:]
    n = shape[0]
    lam = torch.as_tensor(np.broadcast_to(lam, (n,)).copy(), dtype=torch.float64)
    ratio = torch.sqrt(1 - lam) if len(spatial) == 2 else 1 - lam
    mask = torch.ones((n, *spatial), dtype=torch.bool, device=device)
    for axis, size in enumerate(spatial):
        cut = (ratio * size).round().long()
        center = torch.randint(0, size, (n,), generator=generator, device=generator.device).cpu()
        lo = (center - cut // 2).clamp(0, size)
        hi = (center + cut - cut // 2).clamp(0, size)
        coords = torch.arange(size, device=device)
        inside = (coords >= lo.to(device)[:, None]) & (coords < hi.to(device)[:, None])  # (N, size)
        view = [n] + [1] * len(spatial)
        view[1 + axis] = size
        mask &= inside.reshape(view)
    return mask


def cutmix(x, y, generator, *, alpha: float = 1.0, num_classes: int, mode: str = "batch"):
    """CutMix of a batch of signals ``(N, C, L)`` or images ``(N, C, H, W)``, of any dtype
    (pasting needs no arithmetic on pixels); label weights are the measured kept areas."""
    _check(alpha, mode, generator)
    _check_batch("cutmix", x, y)
    return _cutmix(x, y, generator, alpha, num_classes, mode)


def _cutmix(x, y, generator, alpha: float, num_classes: int, mode: str):
    """``cutmix`` with its hyperparameters already checked (by ``cutmix`` or ``Mixing``)."""
    if x.ndim not in (3, 4):
        raise ReglabError(f"cutmix needs inputs (N, C, L) or (N, C, H, W), got shape {tuple(x.shape)}")
    n = len(x)
    lam = sample_beta(alpha, 1 if mode == "batch" else n, generator)
    mask = box_mask(tuple(x.shape), lam, generator, x.device).unsqueeze(1)  # (N, 1, *spatial)
    j = _partners(n, generator, x.device)
    mixed = torch.where(mask, x[j], x)
    dtype = _target_dtype(x)
    kept = 1 - mask.flatten(1).to(dtype).mean(1, keepdim=True)  # the area actually kept
    targets = one_hot(y, num_classes).to(dtype)
    return mixed, kept * targets + (1 - kept) * targets[j]


class Mixing:
    """Batch transform: with probability ``prob`` mix the batch, by CutMix with probability
    ``switch_prob`` (when both α are set) and by Mixup otherwise (timm's ``Mixup`` policy).
    The hyperparameters are checked here, once; each batch is only mixed."""

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        switch_prob: float = 0.5,
        prob: float = 1.0,
        mode: str = "batch",
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, low=2)
        self.mixup_alpha = check_float("mixup_alpha", mixup_alpha, low=0)
        self.cutmix_alpha = check_float("cutmix_alpha", cutmix_alpha, low=0)
        if not (self.mixup_alpha or self.cutmix_alpha):
            raise ReglabError("Mixing needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.switch_prob = check_float("switch_prob", switch_prob, low=0, high=1)
        self.prob = check_float("prob", prob, low=0, high=1)
        self.mode = check_choice("mode", mode, ("batch", "elem"))

    def __call__(self, x, y, generator):
        check_generator(generator)  # the call's arguments are checked per call; the hyperparameters were, once
        _check_batch("Mixing", x, y)
        u = torch.rand(2, generator=generator, device=generator.device).tolist()
        if u[0] >= self.prob:
            return x, one_hot(y, self.num_classes).to(_target_dtype(x))
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or u[1] < self.switch_prob)
        if use_cutmix:
            return _cutmix(x, y, generator, self.cutmix_alpha, self.num_classes, self.mode)
        return _mixup(x, y, generator, self.mixup_alpha, self.num_classes, self.mode)
