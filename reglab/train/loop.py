"""fit(): the epoch loop.

The loop knows no technique by name. Techniques plug in as
- the optimizer (any ``torch.optim.Optimizer``: update rules, decay, clipping),
- batch transforms ``(x, y, generator) -> (x, y)``, applied to training batches only
  (augmentation, noise, mixing; ``y`` may become soft targets),
- loss terms ``model -> scalar`` added to the training loss (penalties),
- callbacks (early stopping, schedules, progress, checkpoints).

Per epoch the History records the mean training loss/accuracy over the epoch's batches (data
loss only, so that the gap to the validation loss compares like with like), the validation
loss/accuracy in ``eval()`` mode under ``no_grad``, the learning rate used and the time taken.
Regression data (float targets, e.g. with ``loss_fn=F.mse_loss``) have no accuracy: their
records hold the losses only.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from reglab._checks import check_bool, check_int
from reglab.data import Data
from reglab.errors import ReglabError, ReglabTypeError
from reglab.matmul import set_kernel
from reglab.train import checks
from reglab.train.callbacks import Callback, call

BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
LossTerm = Callable[[nn.Module], torch.Tensor]

EVAL_BATCH = 1000  # evaluation batch size: bounds memory, does not change results
MONITORS = ("valid_loss", "valid_acc", "train_loss", "train_acc")  # the recorded metrics a callback may watch


class History(list):
    """Per-epoch records (dicts), oldest first; ``h.column("valid_loss")`` gives one series."""

    def column(self, key: str) -> list[float]:
        return [record[key] for record in self]


class Trainer:
    """Trains ``model`` on ``data`` with ``optimizer``; holds everything a checkpoint needs.

    ``state_dict()`` captures model, optimizer, shuffling and dropout RNG states, the
    completed epochs, the History, the stop reason and every callback's state, so that
    ``load_state_dict`` + ``fit()`` continues exactly where the run was interrupted.
    ``loss_fn(output, target)`` defaults to cross-entropy for class labels and to the mean
    squared error for regression targets (``reglab.train.losses.LOSSES`` has ``mae`` too).

    The steps run where the data lives (``data.to(device)``, the model moved alike): batches are
    drawn, transformed and mixed on that device, and each step's loss and logits stay there,
    reduced once per epoch, so that nothing inside an epoch waits for the device (but Mixup and
    CutMix, which read two numbers a batch: whether and which to mix, and the seed of λ's draw).
    ``autocast=torch.bfloat16`` runs every forward pass under ``torch.autocast`` (the loss is
    computed from its outputs in float32); ``compile=True`` trains with ``torch.compile(model)``
    (forward and backward compiled by inductor at the first step; evaluation runs the model).
    ``matmul`` chooses who multiplies the model's ``reglab.matmul.Linear`` layers on CPU:
    ``"aten"`` (MKL), ``"onednn"``, or ``"auto"`` (oneDNN where it is known to be faster: Zen 5);
    ``self.matmul`` is the kernel resolved.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Data,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        batch_size: int,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        callbacks: Sequence[Callback] = (),
        batch_transforms: Sequence[BatchTransform] = (),
        loss_terms: Sequence[LossTerm] = (),
        seed: int = 0,
        autocast: torch.dtype | None = None,
        compile: bool = False,
        matmul: str = "auto",
    ) -> None:
        checks.check_parts(model, data, optimizer)
        self.model, self.data, self.optimizer = model, data, optimizer
        self.epochs, self.batch_size = check_int("epochs", epochs, low=1), check_int("batch_size", batch_size, low=1)
        check_int("seed", seed, low=0)
        self.loss_fn = checks.loss_fn_for(loss_fn, data)
        self.callbacks = checks.callbacks_of(callbacks)
        self.batch_transforms = checks.callables("batch_transforms", batch_transforms)
        self.loss_terms = checks.callables("loss_terms", loss_terms)
        self.device = data.x_train.device
        self.autocast = checks.autocast_dtype(autocast)
        self.compile = check_bool("compile", compile)
        self.matmul = set_kernel(model, matmul, self.device)
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # the compiled model, once made
        self.generator = torch.Generator(device=self.device).manual_seed(seed)  # shuffling, augmentation
        self.classify = not data.regression  # accuracy is recorded for class labels only
        self.history = History()
        self.epoch = 0  # epochs completed
        self.stop_reason: str | None = None
        checks.check_batch_norm(model, len(data.x_train), batch_size)
        checks.check_model(model, data, outputs=loss_fn is None or isinstance(loss_fn, str))
        checks.check_optimizer(model, optimizer)

    @property
    def record_keys(self) -> tuple[str, ...]:
        """The keys of each epoch's record that the loop writes (callbacks may add more)."""
        acc = self.classify
        return (
            "epoch",
            "train_loss",
            *(["train_acc"] if acc else []),
            "valid_loss",
            *(["valid_acc"] if acc else []),
            "lr",
            "time",
        )

    # -- the loop ------------------------------------------------------------------------------
    def cast(self) -> Any:
        """The context of a forward pass: ``torch.autocast`` in the trainer's ``autocast`` dtype
        (products in bfloat16, reductions in float32), or none. The loss is computed after it,
        on the outputs in float32."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def training_forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The model as the training steps call it: ``torch.compile(model)`` (forward and
        backward compiled by inductor, made at the first call) with ``compile``, else the model.
        Evaluation always runs the model itself: one compiled graph, for the training batches."""
        if not self.compile:
            return self.model
        if self._forward is None:
            self._forward = torch.compile(self.model)
        return self._forward

    def fit(self) -> History:
        # per-step hooks, only for the callbacks that have them (weight noise)
        self._batch_begin = [cb for cb in self.callbacks if hasattr(cb, "on_batch_begin")]
        self._after_backward = [cb for cb in self.callbacks if hasattr(cb, "on_after_backward")]
        call(self.callbacks, "on_train_begin", self)
        checks.check_monitors(self)
        while self.epoch < self.epochs and self.stop_reason is None:
            lr = float(self.optimizer.param_groups[0]["lr"])  # a tensor lr (torch.optim allows one) too
            start = time.perf_counter()
            train_loss, train_acc = self.train_epoch()
            valid_loss, valid_acc = self.evaluate(self.data.x_valid, self.data.y_valid)
            self.epoch += 1
            record = {
                "epoch": self.epoch,
                "train_loss": train_loss,
                **({"train_acc": train_acc} if self.classify else {}),
                "valid_loss": valid_loss,
                **({"valid_acc": valid_acc} if self.classify else {}),
                "lr": lr,
                "time": time.perf_counter() - start,
            }
            self.history.append(record)
            if not math.isfinite(train_loss):
                self.stop(f"non-finite train_loss ({train_loss}) at epoch {self.epoch}")
            call(self.callbacks, "on_epoch_end", self, record)
        if self.stop_reason is None:
            self.stop_reason = "completed"
        call(self.callbacks, "on_train_end", self)
        return self.history

    def stop(self, reason: str) -> None:
        """Ask the loop to stop after this epoch; the first reason given is kept."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def train_epoch(self) -> tuple[float, float | None]:
        """One pass over the shuffled training set: mean data loss and accuracy (None for regression)."""
        if not hasattr(self, "_batch_begin"):  # called outside fit()
            self._batch_begin, self._after_backward = [], []
        model, opt, x, y = self.model, self.optimizer, self.data.x_train, self.data.y_train
        model.train()
        n, bs = len(x), self.batch_size
        perm = torch.randperm(n, generator=self.generator, device=self.device)
        # A step only keeps its detached loss and logits; they are reduced once an epoch, so that
        # the step itself does no bookkeeping (BENCHMARKS.md, trainer overhead).
        losses: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        classify = self.classify
        labels: list[torch.Tensor] = []
        forward = self.training_forward()
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb, yb = x[idx], y[idx]
            for transform in self.batch_transforms:
                out = transform(xb, yb, self.generator)
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise ReglabTypeError(
                        f"a batch transform returns (x, y); {checks.name_of(transform)} returned {checks.what(out)}"
                    )
                xb, yb = out
            if self.batch_transforms and classify:
                labels.append(_hard(yb))
            for cb in self._batch_begin:
                cb.on_batch_begin(self)
            with self.cast():
                out = forward(xb)
            data_loss = self.loss_fn(_full(out), yb)
            loss = data_loss
            for term in self.loss_terms:
                loss = loss + term(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for cb in self._after_backward:
                cb.on_after_backward(self)
            opt.step()
            losses.append(data_loss.detach())
            if classify:
                logits.append(out.detach())
        stacked = torch.stack(losses)
        sizes = torch.full_like(stacked, bs)
        sizes[-1] = n - bs * (len(losses) - 1)
        train_loss = float((stacked * sizes).sum()) / n
        if not classify:
            return train_loss, None
        hard = torch.cat(labels) if labels else y[perm]
        return train_loss, float((torch.cat(logits).argmax(1) == hard).sum()) / n

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float | None]:
        """Mean loss and accuracy (None for regression) of the model in ``eval()`` mode (mode
        restored after)."""
        was_training = self.model.training
        self.model.eval()
        total_loss = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for i in range(0, len(x), EVAL_BATCH):
            xb, yb = x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]
            with self.cast():
                out = _full(self.model(xb))
            total_loss += self.loss_fn(out, yb).double() * len(xb)
            if self.classify:
                correct += (out.argmax(1) == _hard(yb)).sum()
        self.model.train(was_training)
        return total_loss.item() / len(x), correct.item() / len(x) if self.classify else None

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs on ``x`` in ``eval()`` mode (mode restored after), in batches."""
        was_training = self.model.training
        self.model.eval()
        out = torch.cat([self.model(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])
        self.model.train(was_training)
        return out

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "epoch": self.epoch,
            "history": list(self.history),
            "stop_reason": self.stop_reason,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "callbacks": {
                key: cb_state
                for key, cb in self._keyed_callbacks()
                if hasattr(cb, "state_dict") and (cb_state := cb.state_dict())
            },
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.history = History(state["history"])
        self.stop_reason = state["stop_reason"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        keyed = dict(self._keyed_callbacks())
        missing = sorted(set(state["callbacks"]) - set(keyed))
        if missing:
            raise ReglabError(f"the checkpoint holds the state of {', '.join(missing)}, which this trainer lacks")
        for key, cb_state in state["callbacks"].items():
            keyed[key].load_state_dict(cb_state)

    def _keyed_callbacks(self) -> list[tuple[str, Callback]]:
        """Callbacks named by class (``EarlyStopping``, ``EarlyStopping#2``, ...)."""
        seen: dict[str, int] = {}
        keyed = []
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            keyed.append((name if seen[name] == 1 else f"{name}#{seen[name]}", cb))
        return keyed


def fit(
    model: nn.Module,
    data: Data,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    callbacks: Iterable[Callback] = (),
    **options: Any,
) -> History:
    """Train ``model`` for ``epochs`` epochs and return its History (see ``Trainer``).

    >>> history = fit(model, data, torch.optim.Adam(model.parameters()), epochs=5, batch_size=100)  # doctest: +SKIP
    """
    return Trainer(
        model, data, optimizer, epochs=epochs, batch_size=batch_size, callbacks=list(callbacks), **options
    ).fit()


def _full(out: torch.Tensor) -> torch.Tensor:
    """Outputs of an autocast forward pass (bfloat16) in float32, for the loss; others as they are."""
    return out.float() if out.dtype == torch.bfloat16 else out


def _hard(y: torch.Tensor) -> torch.Tensor:
    """Class indices from hard labels (N,) or soft targets (N, K)."""
    return y.argmax(1) if y.ndim == 2 else y
