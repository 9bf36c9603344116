"""How many intra-op threads a training step can use well.

A step's matrix products split across threads only pay when each thread gets enough work. On 2
idle AMD EPYC cores a second thread saves nothing at 4 MFLOP a step (a 2×64 MLP), 16% at 47
(the baseline 2×256 MLP at batch 100) and 25-48% from 100 MFLOP up (BENCHMARKS.md); on a busy
machine OpenMP's spin-waiting threads can make a tiny model 100× slower instead. So a step gets
one thread per ``FLOPS_PER_THREAD`` of work, as many as the cores allow: the baseline MLP runs on
one thread, a CNN on images on all of them. The choice depends on the model and the number of
cores only (not on the machine's load), so that a recipe run twice on one machine runs alike.
The estimate counts the forward pass's FLOPs on one batch (``torch.utils.flop_counter``) and
triples them for the backward pass; S copies trained stacked do S times that work. (A study's
combination arm, which runs once every other trial is complete, may take the cores that the
finished workers left: ``reglab.lab.study.runner.last_arm_threads``.)
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

FLOPS_PER_THREAD = 50e6  # per step and thread: below this a second thread saved < 20% here, and risks 100×


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def step_flops(model: nn.Module, batch: torch.Tensor) -> float:
    """Floating-point operations of one training step on ``batch``: 3 × the forward pass's
    (the backward pass costs about twice the forward); the model's mode and weights untouched."""
    from torch.utils.flop_counter import FlopCounterMode

    from reglab.matmul import register_flops

    register_flops()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _eager_dispatch(), FlopCounterMode(display=False) as counter:
            model(batch)
    finally:
        model.train(was_training)
    return 3.0 * counter.get_total_flops()


@contextlib.contextmanager
def _eager_dispatch():
    """``FlopCounterMode`` without importing ``torch._dynamo`` (1.1 s, at its first use in a
    process: every ``reglab train`` on more than one core counted FLOPs). Its mode's
    ``__torch_dispatch__`` is wrapped by ``torch._disable_dynamo``, which imports dynamo to build,
    once, the disabled function it keeps as ``fn.__dynamo_disable``; outside ``torch.compile``
    the function itself is that, so it is lent for the block (and taken back). Where torch's
    internals differ, nothing is lent and the count imports dynamo as before."""
    from torch.utils import flop_counter

    raw = getattr(getattr(getattr(flop_counter, "_FlopCounterMode", None), "__torch_dispatch__", None),
                  "__wrapped__", None)  # fmt: skip
    lend = callable(raw) and not hasattr(raw, "__dynamo_disable") and not torch.compiler.is_compiling()
    if lend:
        setattr(raw, "__dynamo_disable", raw)  # noqa: B010 - the wrapper reads this name with getattr
    try:
        yield
    finally:
        if lend:
            delattr(raw, "__dynamo_disable")


def threads_for(model: nn.Module, batch: torch.Tensor, available: int | None = None, copies: int = 1) -> int:
    """Threads for training ``model`` on batches like ``batch``: one per ``FLOPS_PER_THREAD`` of a
    step's work (``copies`` times one model's, for that many copies trained stacked), at least 1
    and at most ``available`` (default: the cores). A GPU run gets 1 (its host thread only
    launches kernels)."""
    available = cores() if available is None else available
    if batch.device.type != "cpu" or available <= 1:  # nothing to choose: no FLOPs counted (FlopCounterMode
        return 1  # imports torch._dynamo, 1.4 s, at its first use in a process)
    return max(1, min(available, int(copies * step_flops(model, batch) // FLOPS_PER_THREAD) or 1))
