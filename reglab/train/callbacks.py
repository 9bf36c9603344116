"""Callbacks: small hook classes called by the training loop.

A callback overrides any of ``on_train_begin(trainer)``, ``on_epoch_end(trainer, record)`` and
``on_train_end(trainer)``; it asks the loop to stop with ``trainer.stop(reason)``. A callback
that defines ``on_batch_begin(trainer)`` (before the forward pass) or
``on_after_backward(trainer)`` (before the optimizer step) is also called at every step. Callbacks that
keep state across epochs return it from ``state_dict`` so that checkpoints resume them exactly.
Every hook is optional: the loop calls only what an object defines, so any object with one of
these methods is a callback (``Callback`` is a convenient base, not a requirement).

A callback that adds keys to the epoch's record names them in ``records``; a callback that
watches one names it in ``monitor``. The loop checks each ``monitor`` against what will be
recorded before the first step (``check_monitors``), so a typo such as Keras' ``val_loss``
costs no epoch of training. A callback that writes records without naming them leaves that
check to the end of the first epoch.
"""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING, Any

import torch

from reglab._checks import check_bool, check_choice, check_float, check_int, check_str
from reglab.errors import ReglabError, ReglabTypeError
from reglab.regularize.penalties import weight_stats
from reglab.regularize.weights import weights

if TYPE_CHECKING:
    from reglab.train.loop import Trainer


HOOKS = ("on_train_begin", "on_epoch_end", "on_train_end", "on_batch_begin", "on_after_backward")  # what the loop calls


class Callback:
    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def call(callbacks, hook: str, *args) -> None:
    """Call ``hook`` on each callback that defines it (every hook is optional)."""
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            method(*args)


def monitored(record: dict[str, Any], monitor: str, who: str) -> float:
    """``record[monitor]``, or a ``KeyError`` saying what the history records (and the nearest
    name: Keras users write ``val_loss``)."""
    if monitor in record:
        return record[monitor]
    raise KeyError(
        f"{who} monitors {monitor!r}, which the history does not record; it has "
        f"{', '.join(record)}{nearest(monitor, record)}"
    )


def nearest(monitor: str, keys) -> str:
    """``"; did you mean 'valid_loss'?"`` for the closest recorded key (Keras users write ``val_loss``)."""
    near = difflib.get_close_matches(monitor, list(keys), n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Improvement means ``value < best - |min_delta|`` (mode ``min``) or
    ``value > best + |min_delta|`` (mode ``max``); ``auto`` picks ``max`` for accuracies.
    Epochs up to ``start_from_epoch`` are ignored (warm-up). With ``restore_best`` the weights
    of the best epoch are put back when training ends, whether it stopped early or not. A
    non-finite monitored value stops the run and says so. Early stopping regularizes by
    limiting the number of gradient steps (TECHNIQUES.md section 5).

    >>> stopper = EarlyStopping(monitor="valid_loss", patience=10)
    >>> history = fit(model, data, opt, epochs=100, batch_size=100, callbacks=[stopper])  # doctest: +SKIP
    >>> stopper.best_epoch, stopper.stopped_epoch  # doctest: +SKIP
    """

    records = ()  # adds nothing to the epoch's record

    def __init__(
        self,
        monitor: str = "valid_loss",
        mode: str = "auto",
        patience: int = 10,
        min_delta: float = 0.0,
        start_from_epoch: int = 0,
        restore_best: bool = True,
    ) -> None:
        self.monitor = check_str("monitor", monitor)
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        if self.mode == "auto":
            self.mode = "max" if "acc" in monitor else "min"
        self.patience = check_int("patience", patience, low=0)
        self.min_delta = abs(check_float("min_delta", min_delta))
        self.start_from_epoch = check_int("start_from_epoch", start_from_epoch, low=0)
        self.restore_best = check_bool("restore_best", restore_best)
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if trainer.epoch == 0:  # a resumed run keeps the state its checkpoint restored
            self._reset()

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        value, epoch = monitored(record, self.monitor, "EarlyStopping"), record["epoch"]
        if not math.isfinite(value):
            self.stopped_epoch = epoch
            trainer.stop(f"non-finite {self.monitor} ({value}) at epoch {epoch}")
            return
        if epoch <= self.start_from_epoch:
            return
        if self._is_improvement(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop(
                f"early stopping: {self.monitor} did not improve by more than {self.min_delta:g} for "
                f"{self.wait} epochs (best {self.best:.4g} at epoch {self.best_epoch})"
            )

    def _is_improvement(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_end(self, trainer: Trainer) -> None:
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        keys = ("best", "best_epoch", "wait", "stopped_epoch", "best_state")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class ProgressBar(Callback):
    """A rich progress bar over epochs showing the latest train and validation loss."""

    records = ()

    def __init__(self, description: str = "training") -> None:
        self.description = description
        self._progress = None

    def on_train_begin(self, trainer: Trainer) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(),
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=trainer.epochs, completed=trainer.epoch, losses="")

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        losses = f"train {record['train_loss']:.4f}  valid {record['valid_loss']:.4f}"
        self._progress.update(self._task, completed=record["epoch"], losses=losses)

    def on_train_end(self, trainer: Trainer) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class LRScheduler(Callback):
    """Steps a ``torch.optim.lr_scheduler`` scheduler at the end of every epoch; a
    ``ReduceLROnPlateau`` is given the monitored validation metric. Its state is checkpointed."""

    records = ()

    def __init__(self, scheduler: Any, monitor: str = "valid_loss") -> None:
        if not isinstance(
            scheduler, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        ):
            raise ReglabTypeError(
                f"LRScheduler takes a torch.optim.lr_scheduler scheduler, got {type(scheduler).__name__}"
            )
        self.scheduler = scheduler
        self.monitor = check_str("monitor", monitor)

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.scheduler.optimizer is not trainer.optimizer:  # it would schedule an optimizer that does not train
            raise ReglabError(
                "LRScheduler: the scheduler was built on another optimizer than the one training the model"
            )

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(monitored(record, self.monitor, "LRScheduler"))
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class WeightStats(Callback):
    """Adds statistics of the penalized weights to every epoch's record: ``zero_frac`` and
    ``tiny_frac`` (|w| < 1e-6), ``weight_l1``, ``weight_l2``, and the first layer's fractions."""

    records = ("zero_frac", "tiny_frac", "weight_l1", "weight_l2", "first_zero_frac", "first_tiny_frac")

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:

        record.update(weight_stats(trainer.model))


class GradNorms(Callback):
    """Adds per-layer gradient norms to every epoch's record: ``grad_norm_1`` ... ``grad_norm_L``,
    the L2 norm ``‖∂L/∂W_l‖₂`` of the gradient of the l-th weight (``reglab.regularize.weights``;
    1 = the input side), averaged over the epoch's steps and taken before the optimizer's clipping.

    Vanishing gradients show as norms that shrink toward the input layer (sigmoid and tanh
    saturate), exploding ones as norms that grow without bound (TECHNIQUES.md section 10).
    With ``per_step`` the record also holds ``grad_norm_steps``: the global norm over all the
    weights, ``√Σ_l ‖∂L/∂W_l‖²``, at each of the epoch's steps (what clipping by norm sees).
    The norms of a step are kept on the device; one read per epoch.
    """

    def __init__(self, per_step: bool = False) -> None:
        self.per_step = check_bool("per_step", per_step)

    def on_train_begin(self, trainer: Trainer) -> None:
        self.weights = weights(trainer.model)
        self._reset()

    @property
    def records(self) -> tuple[str, ...]:
        layers = tuple(f"grad_norm_{i}" for i in range(1, len(getattr(self, "weights", ())) + 1))
        return (*layers, "grad_norm_steps") if self.per_step else layers

    def _reset(self) -> None:
        self.total: torch.Tensor | None = None  # sum over the epoch's steps, one entry per layer
        self.steps = 0
        self.each: list[torch.Tensor] = []  # per step: the global norm

    def on_after_backward(self, trainer: Trainer) -> None:
        norms = torch.stack([w.grad.norm() if w.grad is not None else w.new_zeros(()) for w in self.weights])
        self.total = norms if self.total is None else self.total + norms
        self.steps += 1
        if self.per_step:
            self.each.append(norms.norm())

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.total is not None:
            record.update({f"grad_norm_{i}": v for i, v in enumerate((self.total / self.steps).tolist(), start=1)})
        if self.per_step and self.each:
            record["grad_norm_steps"] = torch.stack(self.each).tolist()
        self._reset()


class TargetLoss(Callback):
    """Stop once the epoch's training loss is at most ``target``: train to a low training loss
    whatever the batch size (Keskar et al. compare minima reached this way)."""

    records = ()

    def __init__(self, target: float) -> None:
        self.target = check_float("target", target, low=0, low_open=True)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if record["train_loss"] <= self.target:
            trainer.stop(f"reached the target training loss {self.target:g} at epoch {record['epoch']}")
