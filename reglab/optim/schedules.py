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

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import lr_scheduler

from reglab.registry import Registry

# name -> (optimizer, config, epochs it spans) -> scheduler; ``config`` is any object with the
# fields of a recipe's schedule section (``reglab.lab.sections.ScheduleConfig``)
Builder = Callable[[torch.optim.Optimizer, Any, int], Any]


def _plateau(optimizer: torch.optim.Optimizer, c: Any, epochs: int) -> Any:
    mode = "max" if "acc" in c.monitor else "min"
    return lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=c.factor, patience=c.patience, min_lr=c.min_lr)


def _onecycle(optimizer: torch.optim.Optimizer, c: Any, epochs: int) -> Any:
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=epochs, pct_start=c.pct_start)


SCHEDULES: Registry[Builder] = Registry(
    "schedule",
    {
        "none": lambda opt, c, epochs: lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0),
        "step": lambda opt, c, epochs: lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma),
        "multistep": lambda opt, c, epochs: lr_scheduler.MultiStepLR(
            opt, milestones=[m - c.warmup_epochs for m in c.milestones], gamma=c.gamma
        ),
        "exponential": lambda opt, c, epochs: lr_scheduler.ExponentialLR(opt, gamma=c.gamma),
        "cosine": lambda opt, c, epochs: lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=c.min_lr),
        "onecycle": _onecycle,
        "plateau": _plateau,
    },
)
OWN_RAMP = ("onecycle", "plateau")  # schedules with a ramp of their own: no warm-up in front


def build_scheduler(config: Any, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    """The scheduler ``config`` (a recipe's schedule section) describes for ``epochs`` epochs,
    or ``None`` for ``none`` without warm-up."""
    name, warmup = config.name, config.warmup_epochs
    if name == "none" and not warmup:
        return None
    if name in OWN_RAMP or not warmup:
        return SCHEDULES[name](optimizer, config, epochs)
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=config.warmup_start_factor, end_factor=1.0, total_iters=warmup)
    main = SCHEDULES[name](optimizer, config, max(epochs - warmup, 1))
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
