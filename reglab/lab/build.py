"""The composition root: a Recipe becomes data, a model, an optimizer and the techniques.

``build(recipe)`` returns a ready, seeded ``Trainer``. The training loop knows no technique by
name; each technique of a recipe is one row of ``TECHNIQUES``: when the recipe asks for it, and
what it adds to the trainer, as one of the loop's plug-in kinds:

- ``batch``: a training-only batch transform ``(x, y, generator) -> (x, y)``;
- ``loss``: a loss term ``model -> scalar``;
- ``callback``: a callback (hooks per epoch, or per step).

Rows of one kind act in table order (augmentation before noise before mixing; early stopping
sees an epoch's record before the schedule steps). Techniques that are optimizer options
(weight decay, L1, clipping) are built with the optimizer. A new technique is its function,
one recipe field and one row here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reglab.augment import Augment, LabelSmoothing, Mixing
from reglab.data import Data, load_data
from reglab.errors import ReglabError
from reglab.lab.recipe import Recipe
from reglab.models import build_model
from reglab.optim import build_optimizer
from reglab.optim.schedules import build_scheduler
from reglab.regularize import InputNoise, Penalty, WeightNoise
from reglab.train.callbacks import Callback, EarlyStopping, GradNorms, LRScheduler, TargetLoss, WeightStats
from reglab.train.loop import Trainer
from reglab.train.losses import LOSSES
from reglab.train.probes import StepSize


@dataclass(frozen=True)
class Parts:
    """What a technique's row may build on."""

    recipe: Recipe
    data: Data
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer


@dataclass(frozen=True)
class Technique:
    name: str
    kind: str  # "batch", "loss" or "callback"
    wanted: Callable[[Recipe], Any]  # truthy when the recipe asks for it
    make: Callable[[Parts], Any]  # the batch transform, loss term or callback (None: nothing to add)


def _mixing(p: Parts) -> Mixing:
    m = p.recipe.mixing
    if m.cutmix_alpha and len(p.data.input_shape) not in (2, 3):
        raise ReglabError(
            f"mixing.cutmix_alpha needs signals or images; this data set's samples have shape {p.data.input_shape}"
        )
    return Mixing(p.data.num_classes, m.mixup_alpha, m.cutmix_alpha, m.switch_prob, m.prob, m.mode)


def _early_stopping(p: Parts) -> EarlyStopping:
    es = p.recipe.early_stopping
    return EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta, es.start_from_epoch, es.restore_best)


def _schedule(p: Parts) -> LRScheduler | None:
    scheduler = build_scheduler(p.recipe.schedule, p.optimizer, p.recipe.training.epochs)
    return None if scheduler is None else LRScheduler(scheduler, p.recipe.schedule.monitor)


TECHNIQUES: tuple[Technique, ...] = (
    # training batches, in this order
    Technique("augmentation", "batch", lambda r: r.augment.active,
              lambda p: Augment(p.recipe.augment, p.data.input_shape)),
    Technique("input noise", "batch", lambda r: r.regularization.input_noise,
              lambda p: InputNoise(p.recipe.regularization.input_noise)),
    Technique("label smoothing", "batch", lambda r: r.mixing.label_smoothing,
              lambda p: LabelSmoothing(p.data.num_classes, p.recipe.mixing.label_smoothing)),
    Technique("mixing", "batch", lambda r: r.mixing.mixup_alpha or r.mixing.cutmix_alpha, _mixing),
    # the training loss
    Technique("penalty", "loss", lambda r: r.regularization.l1 or r.regularization.l2,
              lambda p: Penalty(p.recipe.regularization.l1, p.recipe.regularization.l2)),
    # callbacks, called in this order
    Technique("early stopping", "callback", lambda r: r.early_stopping.enabled, _early_stopping),
    Technique("schedule", "callback", lambda r: True, _schedule),  # None for schedule.name = none without warm-up
    Technique("weight noise", "callback", lambda r: r.regularization.weight_noise,
              lambda p: WeightNoise(p.recipe.regularization.weight_noise)),
    Technique("weight statistics", "callback", lambda r: True, lambda p: WeightStats()),
    Technique("gradient norms", "callback", lambda r: r.training.grad_norms or r.training.grad_norm_steps,
              lambda p: GradNorms(per_step=p.recipe.training.grad_norm_steps)),
    Technique("step size", "callback", lambda r: r.training.step_size, lambda p: StepSize()),
    Technique("target loss", "callback", lambda r: r.training.target_loss,
              lambda p: TargetLoss(p.recipe.training.target_loss)),
)  # fmt: skip


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ReglabError(f"training.device = {name!r} but CUDA is not available here; use cpu or auto")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ReglabError(f"training.device = {name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ReglabError("training.device = 'mps' but MPS (Apple's GPU) is not available here; use cpu or auto")
    return torch.device(name)


def build(recipe: Recipe, callbacks: Sequence[Callback] = (), data: Data | None = None) -> Trainer:
    """Build data, model, optimizer and techniques of ``recipe`` into a Trainer, seeded;
    ``callbacks`` come after the recipe's own, ``data`` reuses data loaded for this recipe."""
    device = resolve_device(recipe.training.device)
    seed = recipe.training.seed
    data = (data or load_data(recipe.data, seed, regression=recipe.training.regression)).to(device)
    if data.regression != recipe.training.regression:
        given = "regression targets" if data.regression else "class labels"
        raise ReglabError(f"training.loss = {recipe.training.loss!r} does not fit the data given ({given})")
    torch.manual_seed(seed)
    model = build_model(recipe.model, data.input_shape, data.num_outputs).to(device)
    o = recipe.optimizer
    optimizer = build_optimizer(o.name, o.lr, o.options, model, decay_all=o.decay_all)
    parts = Parts(recipe, data, model, optimizer)
    made: dict[str, list[Any]] = {"batch": [], "loss": [], "callback": []}
    for technique in TECHNIQUES:
        if technique.wanted(recipe):
            piece = technique.make(parts)
            if piece is not None:
                made[technique.kind].append(piece)
    return Trainer(
        model,
        data,
        optimizer,
        epochs=recipe.training.epochs,
        batch_size=recipe.data.batch_size,
        loss_fn=LOSSES[recipe.training.loss],
        callbacks=made["callback"] + list(callbacks),
        batch_transforms=made["batch"],
        loss_terms=made["loss"],
        seed=seed,
        autocast=torch.bfloat16 if recipe.training.autocast == "bf16" else None,
        compile=recipe.training.compile,
        matmul=recipe.training.matmul,
    )
