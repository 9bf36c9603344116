"""Learning-rate schedules, built from a recipe onto ``torch.optim.lr_scheduler``.

PyTorch already implements these schedules well, so reglab looks them up by name and adds
what a recipe needs: linear warm-up in front of any of them, and validation. Stepped once per
epoch (``t`` = epochs completed, ``T`` = epochs after warm-up, ``η`` = the optimizer's lr):

- ``step``:        ``η γ^⌊t / step_size⌋``
- ``multistep``:   ``η γ^(number of milestones <= t)``
- ``exponential``: ``η γ^t``
- ``cosine``:      ``η_min + (η − η_min)(1 + cos(π t / T)) / 2``
- ``onecycle``:    Smith & Topin (arXiv:1708.07120): from ``η/25`` up to ``η`` over the first
  ``pct_start`` of training, then cosine down to ``η/(25·10⁴)``; momentum (or β₁) cycles
  inversely between 0.85 and 0.95 when the optimizer has one
- ``plateau``:     multiply by ``factor`` when the monitored validation metric has not improved
  for ``patience`` epochs (driven by ``scheduler.step(metric)``)
- warm-up:         for ``t < warmup_epochs``, ``η (s + (1 − s) t / warmup_epochs)``, ``s`` =
  ``warmup_start_factor``, then the schedule (not available with ``plateau``/``onecycle``)

A recipe whose schedule cannot act within its epochs (a warm-up as long as the run, a first
decay at or after the last epoch, ``multistep`` without milestones) is refused when it is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.optim import lr_scheduler

if TYPE_CHECKING:
    from reglab.recipe import ScheduleConfig

SCHEDULES = ("none", "step", "multistep", "exponential", "cosine", "onecycle", "plateau")


def build_scheduler(config: ScheduleConfig, optimizer: torch.optim.Optimizer, epochs: int):
    """The scheduler ``config`` describes for ``epochs`` epochs, or ``None`` for ``none``."""
    name, warmup = config.name, config.warmup_epochs
    if name == "none" and not warmup:
        return None
    if name == "plateau":
        mode = "max" if "acc" in config.monitor else "min"
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=config.factor, patience=config.patience, min_lr=config.min_lr
        )
    if name == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=epochs, pct_start=config.pct_start)
    rest = max(epochs - warmup, 1)
    main = {
        "none": lambda: lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0),
        "step": lambda: lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma),
        "multistep": lambda: lr_scheduler.MultiStepLR(
            optimizer, milestones=[m - warmup for m in config.milestones], gamma=config.gamma
        ),
        "exponential": lambda: lr_scheduler.ExponentialLR(optimizer, gamma=config.gamma),
        "cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, T_max=rest, eta_min=config.min_lr),
    }[name]
    if not warmup:
        return main()
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=config.warmup_start_factor, end_factor=1.0, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main()], milestones=[warmup])
