"""Stacked training: S trials of one architecture and optimizer (the seeds of a study's arm,
and of the arms that differ from it only in what their batches go through and in their early
stopping) trained as one model whose weights carry a leading copy axis (``stacked_model``).

Each copy is a separate ``Trainer`` (built as for a run of its own: its initialization, data
split, shuffling and transform generator, callbacks and History); ``StackedTrainer`` replaces
only their training passes. Per step it gathers each copy's batch (the copy's own permutation and
batch transforms, drawn from the copy's generator in the same order as a separate run), runs the
stacked model on the (S, B, ...) batch,

    Linear:      y_s = x_s W_sᵀ + b_s           (one ``baddbmm`` for the S copies)
    batch norm:  each copy normalized by its own batch statistics, its own running averages
    dropout:     each copy's mask drawn from its own generator, seeded as its run's global RNG

and takes one optimizer step on the sum of the copies' losses, ``Σ_s L_s``: the gradient of copy
s is ∂L_s/∂θ_s, and an elementwise update (SGD, momentum, Adam, decay, proximal L1) on stacked
buffers is each copy's own update. At each epoch's end the copies' weights are copied into their
Trainers, which evaluate (on CPU; on other devices every copy is evaluated in one stacked pass,
``StackedTrainer.evaluate``), record and call their callbacks exactly as ``Trainer.fit`` does; a copy
that stops (early stopping, a target loss, a non-finite loss) is frozen from then on, and its
callbacks' ``on_train_end`` restores its best weights as in a run of its own.

What cannot be stacked (``stack_problem``): models other than the ``mlp`` builder's layers (and
batch / layer norm, dropout), loss terms, callbacks that act at every step, gradient clipping by
the global norm (one norm over all the copies), schedules that read a copy's validation loss.
The results equal separate trainings to float rounding: the batched products round differently
from one product per copy, and tests/train/test_stacked.py finds every history of the default
study's arms within 1e-5 (relative) of separate trainings over 3 epochs, except the validation
loss of the batch-norm arm (1e-3): the bias of a Linear layer followed by batch norm has an exact
gradient of 0, which batch norm's subtraction of the mean leaves as rounding noise of ~1e-9, and
Adam divides it by its own running scale into steps of the full size η whose signs follow the
noise. The normalized outputs, hence the training loss, do not see those biases; the running
means that evaluation uses do. Computing each copy's product on its own (``addmm``) makes stacked
training bitwise equal to separate runs but slower than them on CPU (BENCHMARKS.md). A copy's
rounding may also depend on how many copies it is stacked with (within 1e-6 over 3 epochs):
Adam's fused kernel rounds a tensor's vectorized body and its last elements apart, and which of
a copy's elements come last depends on the stacked tensor's size. The same copies stacked alike
give the same bits.

Copies may differ in their batch transforms (augmentation, noise, label smoothing, mixing):
each copy's batch goes through its own, drawn from its own generator, and where some copies'
targets are class labels and others' soft targets, the loss is taken over each kind's copies
apart (``_kinds_losses``). They may differ in their early stopping too: each copy's callback reads
its own validation loss, and a copy stops, is frozen and restored on its own. With ``shrink=True``
they may differ in their weight decay (coupled or decoupled) and proximal L1: the stacked optimizer
has none, and each copy's own, read from its own optimizer's groups, is applied around the stacked
step (``stacked_shrink.CopyShrink``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from reglab import matmul
from reglab.errors import ReglabError
from reglab.train.callbacks import LRScheduler, call
from reglab.train.loop import EVAL_BATCH, Trainer, _full
from reglab.train.losses import LOSSES
from reglab.train.stacked_model import StackedModel, layers_problem
from reglab.train.stacked_shrink import SHRINK, CopyShrink, shrink_problem


class StackedTrainer:
    """Trains the ``trainers`` (separately built, one per copy; ``rng_states[s]``: the state of
    the default generator of the copies' device right after copy s's model was built, which its
    dropout draws from in a run of its own) as one stacked model with the optimizer
    ``make_optimizer(stacked_model)`` builds. The trainers' ``autocast`` and ``compile`` apply
    to the stacked forward pass (compiled: the stacked forward and backward, one graph)."""

    def __init__(
        self,
        trainers: Sequence[Trainer],
        rng_states: Sequence[torch.Tensor],
        make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
        shrink: bool = False,
    ) -> None:
        self.trainers = list(trainers)
        first = self.trainers[0]
        if any(_shape(t) != _shape(first) for t in self.trainers):
            raise ReglabError(
                "stacked copies need the same epochs, batch size, training-set size, device, autocast, compile "
                "and matmul"
            )
        self.generators = [torch.Generator(device=first.device).manual_seed(0) for _ in self.trainers]
        for g, state in zip(self.generators, rng_states):
            g.set_state(state)
        self.model = StackedModel([t.model for t in self.trainers], self.generators).to(first.device)
        matmul.set_kernel(self.model, first.matmul, first.device)
        self.optimizer = make_optimizer(self.model)
        # shrink: each copy's weight decay and proximal L1 applied per copy, around the stacked
        # optimizer's step (which must then have none: ``reglab.lab.stack.stacked_trainer``)
        self.shrink = None
        if shrink:
            problem = shrink_problem([t.optimizer for t in self.trainers])
            if problem:
                raise ReglabError(f"the copies' weight decay and proximal L1 cannot be applied copy by copy: {problem}")
            self.shrink = CopyShrink(self.model.layers, [t.model for t in self.trainers],
                                     [t.optimizer for t in self.trainers]) or None  # fmt: skip
        self.forward = torch.compile(self.model) if first.compile else self.model  # compiled: forward and backward
        self._sets: tuple[torch.Tensor, torch.Tensor] | None = None  # the copies' training sets, stacked
        self._valid: tuple[torch.Tensor, torch.Tensor] | None = None  # their validation sets, stacked
        self._batched_loss = all(t.loss_fn is first.loss_fn for t in self.trainers) and any(
            first.loss_fn is f for f in _LOSSES
        )  # one loss call for every copy (``_losses``)
        # the validation pass of every copy at once (``evaluate``) off the CPU; on CPU copy by copy
        # (``Trainer.evaluate``): one pass took 1.10-1.26x its time there (BENCHMARKS.md)
        self.one_pass = first.device.type != "cpu"
        self.frozen: dict[int, list[torch.Tensor]] = {}  # copy -> its weights when it stopped
        self._kind_rows: dict[tuple[int, ...], torch.Tensor] = {}  # the copies whose targets are of one kind

    def fit(self) -> list[Any]:
        trainers = self.trainers
        for t in trainers:
            call(t.callbacks, "on_train_begin", t)
            # the stacked optimizer takes the copy's steps: its schedule's check that its optimizer
            # stepped before it (torch.optim.lr_scheduler, a warning) holds for the copy's
            t.optimizer._opt_called = True
        while any(s not in self.frozen for s in range(len(trainers))):
            active = [s for s in range(len(trainers)) if s not in self.frozen]
            self._follow_schedule(trainers[active[0]])
            lr = float(self.optimizer.param_groups[0]["lr"])
            start = time.perf_counter()
            results = self.train_epoch()
            valid = self.evaluate() if self.one_pass else None
            share = (time.perf_counter() - start) / len(active)  # each copy's share of the stacked epoch
            for s in active:
                t = trainers[s]
                begin = time.perf_counter()
                self.model.copy_to(s)  # its weights in its own model: for its callbacks (early stopping)
                valid_loss, valid_acc = valid[s] if valid else t.evaluate(t.data.x_valid, t.data.y_valid)
                train_loss, train_acc = results[s]
                t.epoch += 1
                record = {"epoch": t.epoch, "train_loss": train_loss}  # the keys in Trainer.fit's order
                if t.classify:
                    record["train_acc"] = train_acc
                record["valid_loss"] = valid_loss
                if t.classify:
                    record["valid_acc"] = valid_acc
                record.update(lr=lr, time=share + time.perf_counter() - begin)
                t.history.append(record)
                if not math.isfinite(train_loss):
                    t.stop(f"non-finite train_loss ({train_loss}) at epoch {t.epoch}")
                call(t.callbacks, "on_epoch_end", t, record)
                if t.epoch >= t.epochs and t.stop_reason is None:
                    t.stop_reason = "completed"
                if t.stop_reason is not None:
                    self.frozen[s] = self.model.snapshot(s)
                    call(t.callbacks, "on_train_end", t)
        return [t.history for t in trainers]

    @torch.no_grad()
    def evaluate(self) -> list[tuple[float, float | None]]:
        """Each copy's mean validation loss and accuracy (None for regression), as
        ``Trainer.evaluate`` computes them (``eval()`` mode, batches of ``EVAL_BATCH``, the
        mean loss of each batch weighted by its size in float64), for all the copies in one
        stacked pass: reduced on the device and read once, where copy by copy takes S passes and
        2S reads. A frozen copy's are computed too (its stopped weights; not recorded). Equal to
        each copy's ``Trainer.evaluate`` to float rounding (the batched products)."""
        trainers, first, model = self.trainers, self.trainers[0], self.model
        if self._valid is None:
            self._valid = (torch.stack([t.data.x_valid for t in trainers]),
                           torch.stack([t.data.y_valid for t in trainers]))  # fmt: skip
        x, y = self._valid
        copies, n = x.shape[:2]
        total = torch.zeros(copies, device=first.device, dtype=torch.float64)
        correct = torch.zeros(copies, device=first.device, dtype=torch.long)
        was_training = model.training
        model.eval()
        for i in range(0, n, EVAL_BATCH):
            xb, yb = x[:, i : i + EVAL_BATCH], y[:, i : i + EVAL_BATCH]
            with first.cast():
                out = _full(model(xb))
            each = self._losses(out, yb)
            total += each.double() * xb.shape[1]
            if first.classify:
                correct += (out.argmax(-1) == (yb.argmax(-1) if yb.ndim == 3 else yb)).sum(1)
        model.train(was_training)
        losses = (total / n).tolist()
        if not first.classify:
            return [(loss, None) for loss in losses]
        return [(loss, c / n) for loss, c in zip(losses, correct.tolist())]

    def _follow_schedule(self, lead: Trainer) -> None:
        """The stacked optimizer's hyperparameters from an active copy's own optimizer, which its
        schedule (an ``LRScheduler`` callback) stepped: every active copy is at the same epoch."""
        if not any(isinstance(cb, LRScheduler) for cb in lead.callbacks):
            return
        theirs = lead.optimizer.param_groups
        skip = ("params", *SHRINK) if self.shrink else ("params",)  # the copy's own strengths stay its own
        for i, mine in enumerate(self.optimizer.param_groups):
            for key, value in theirs[min(i, len(theirs) - 1)].items():  # a copy's decay groups share their lr
                if key not in skip:
                    mine[key] = value

    def train_epoch(self) -> list[tuple[float, float | None]]:
        """One pass over each copy's shuffled training set; per copy (mean loss, accuracy).

        Each step works on the copies at once where it can: one gather of the (S, B) batch
        from the copies' stacked training sets (copy by copy where batch transforms draw from
        each copy's generator), one loss over the S·B samples (the copies' mean losses, for
        PyTorch's losses; a custom loss function is called per copy), and the losses and
        logits kept as (S, ...) tensors, reduced once per epoch."""
        trainers, model, opt = self.trainers, self.model, self.optimizer
        model.train()
        first = trainers[0]
        n, bs, copies = len(first.data.x_train), first.batch_size, len(trainers)
        lr = float(opt.param_groups[0]["lr"])  # a schedule moves it between epochs (``_follow_schedule``)
        perms = torch.stack([torch.randperm(n, generator=t.generator, device=t.device) for t in trainers])
        transforms = any(t.batch_transforms for t in trainers)
        if not transforms and self._sets is None:
            self._sets = (torch.stack([t.data.x_train for t in trainers]),
                          torch.stack([t.data.y_train for t in trainers]))  # fmt: skip
        rows = torch.arange(copies, device=first.device).unsqueeze(1)
        losses: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        for i in range(0, n, bs):
            idx = perms[:, i : i + bs]
            if transforms:
                xs, ys = [], []
                for s, t in enumerate(trainers):
                    xb, yb = t.data.x_train[idx[s]], t.data.y_train[idx[s]]
                    for transform in t.batch_transforms:
                        xb, yb = transform(xb, yb, t.generator)
                    xs.append(xb)
                    ys.append(yb)
                xb = torch.stack(xs)
                yb = torch.stack(ys) if len({(y.shape, y.dtype) for y in ys}) == 1 else ys  # labels and soft targets
            else:
                xb, yb = self._sets[0][rows, idx], self._sets[1][rows, idx]
            with first.cast():
                out = self.forward(xb)
            out = _full(out)
            if isinstance(yb, list):  # some copies' targets are class labels, others' soft targets
                each = self._kinds_losses(out, yb)
            else:
                each = self._losses(out, yb)
            opt.zero_grad(set_to_none=True)
            each.sum().backward()
            if self.shrink:
                self.shrink.before_step(lr)
            opt.step()
            if self.shrink:
                self.shrink.after_step(lr)
            for s, saved in self.frozen.items():
                model.restore(s, saved)
            losses.append(each.detach())
            if first.classify:
                logits.append(out.detach())
                if isinstance(yb, list):
                    labels.append(torch.stack([y.argmax(-1) if y.ndim == 2 else y for y in yb]))
                else:
                    labels.append(yb.argmax(-1) if yb.ndim == 3 else yb)
        stacked = torch.stack(losses, 1)  # (S, steps)
        sizes = torch.full_like(stacked[0], bs)
        sizes[-1] = n - bs * (stacked.shape[1] - 1)
        mean_losses = [total / n for total in (stacked * sizes).sum(1).tolist()]  # as Trainer.train_epoch
        if not first.classify:
            return [(loss, None) for loss in mean_losses]
        correct = (torch.cat(logits, 1).argmax(-1) == torch.cat(labels, 1)).sum(1).tolist()
        return [(loss, c / n) for loss, c in zip(mean_losses, correct)]

    def _losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each copy's mean loss, (S,), of its outputs ``out[s]`` against its targets ``y[s]``:
        one call over the S·B samples where every copy has the same PyTorch loss (the mean over
        each copy's samples of the per-sample losses), else one call per copy."""
        if self._batched_loss:
            first = self.trainers[0]
            return first.loss_fn(out.flatten(0, 1), y.flatten(0, 1), reduction="none").view(len(out), -1).mean(1)
        return torch.stack([t.loss_fn(o, t_y) for t, o, t_y in zip(self.trainers, out.unbind(), y.unbind())])

    def _kinds_losses(self, out: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor:
        """Each copy's mean loss where the copies' targets differ in kind (class labels beside
        the soft targets of label smoothing or mixing): one loss over the samples of the copies
        of each kind, each copy's per-sample losses as in a stack of its kind alone."""
        trainers = self.trainers
        kinds: dict[tuple, list[int]] = {}
        for s, (t, y) in enumerate(zip(trainers, targets)):
            kinds.setdefault((id(t.loss_fn), y.shape, y.dtype), []).append(s)
        each: list[torch.Tensor | None] = [None] * len(trainers)
        for members in kinds.values():
            loss_fn = trainers[members[0]].loss_fn
            if any(loss_fn is f for f in _LOSSES):
                if tuple(members) not in self._kind_rows:  # made once: no host-to-device copy a step
                    self._kind_rows[tuple(members)] = torch.tensor(members, device=out.device)
                o = out.index_select(0, self._kind_rows[tuple(members)])
                y = torch.stack([targets[s] for s in members])
                values = loss_fn(o.flatten(0, 1), y.flatten(0, 1), reduction="none").view(len(members), -1).mean(1)
            else:
                values = torch.stack([loss_fn(out[s], targets[s]) for s in members])
            for s, v in zip(members, values.unbind()):
                each[s] = v
        return torch.stack(each)


_LOSSES = tuple(LOSSES.values())  # PyTorch's losses: they take reduction="none"


def _shape(t: Trainer) -> tuple:
    """What the copies of a stacked model must share."""
    return t.epochs, t.batch_size, len(t.data.x_train), t.device, t.autocast, t.compile, t.matmul


def stack_problem(trainers: Sequence[Trainer]) -> str | None:
    """Why these trainers cannot train stacked, or None."""
    problem = layers_problem([t.model for t in trainers])
    if problem:
        return problem
    for t in trainers:
        if t.loss_terms:
            return "a loss term (an L1/L2 penalty in the loss)"
        if any(hasattr(cb, "on_batch_begin") or hasattr(cb, "on_after_backward") for cb in t.callbacks):
            return "a callback that acts at every step (weight noise, gradient norms, the step size)"
        for group in t.optimizer.param_groups:
            if group.get("clip_norm"):
                return "gradient clipping by the global norm (one norm over every copy)"
        schedules = [cb.scheduler for cb in t.callbacks if isinstance(cb, LRScheduler)]
        if any(isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau) for s in schedules):
            return "a schedule that reads each copy's validation loss"
    return None
