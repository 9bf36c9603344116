"""Running recipes stacked (``reglab.train.stacked``): the seeds of one arm, and arms that differ
only in what their batches go through, in their early stopping and in their optimizer's weight
decay and proximal L1, built, trained and written exactly as separate runs would be
(``run_recipe``'s files in each run's folder)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from reglab.errors import ReglabError
from reglab.lab.build import build
from reglab.lab.recipe import Recipe
from reglab.lab.run import Result, run_threads, versions, write_results
from reglab.optim import build_optimizer
from reglab.train.checkpoint import save
from reglab.train.stacked import StackedTrainer, stack_problem
from reglab.train.stacked_shrink import SHRINK, acts_before_decay

MAX_COPIES = 6  # more copies than this leave the L2 cache on CPU and run slower per copy (BENCHMARKS.md)
DEVICE_COPIES = 64  # a GPU's room: far below its memory for the mlp builder's models; bounds a step's memory
# What each copy of a stacked model has of its own: its seed (initialization, data order, masks),
# its batch transforms, each copy's from its own generator (StackedTrainer.train_epoch), and its
# early stopping (each copy's callback reads its own validation loss; a copy that stops is frozen).
PER_COPY = ("training.seed", "augment", "regularization.input_noise", "mixing", "early_stopping")
# and, where the optimizer takes them around its step (``shrinks_per_copy``), its weight decay and
# proximal L1: ``StackedTrainer(..., shrink=True)`` applies each copy's own (train/stacked_shrink.py)
SHRINK_OPTIONS = tuple(f"optimizer.options.{name}" for name in SHRINK)


def shrinks_per_copy(recipe: Recipe) -> bool:
    """Whether a stacked copy's weight decay and proximal L1 may be its own: none of the
    optimizer's options acts on the gradient before the decay, or makes it change with the step
    (``maximize``, ``clip_value``, ``weight_decay_schedule``: ``stacked_shrink.BEFORE_DECAY``)."""
    return acts_before_decay(recipe.optimizer.options) is None


def stack_key(recipe: Recipe) -> str:
    """What recipes must share to train as one stacked model: the recipe but its ``PER_COPY``
    fields (seed, augmentation, input noise, label smoothing, mixing, early stopping) and, where
    ``shrinks_per_copy``, its optimizer's weight decay and proximal L1 (``SHRINK_OPTIONS``), as
    canonical JSON. The model, the rest of the optimizer, schedule, epochs, batch size and data
    are shared."""
    d, default = recipe.to_dict(), Recipe().to_dict()
    for key in PER_COPY:
        section, _, name = key.partition(".")
        if name:
            d[section][name] = default[section][name]
        else:
            d[section] = default[section]
    if shrinks_per_copy(recipe):
        for name in SHRINK:
            d["optimizer"]["options"].pop(name, None)
    return json.dumps(d, sort_keys=True)


def room(device: torch.device) -> int:
    """How many copies one stacked model holds on ``device``: ``MAX_COPIES`` on CPU (L2 cache),
    ``DEVICE_COPIES`` on a GPU (a small model's step is launch-bound there: more copies cost
    almost nothing)."""
    return MAX_COPIES if device.type == "cpu" else DEVICE_COPIES


def recipe_problem(recipe: Recipe) -> str | None:
    """What in a recipe keeps its seeds from training stacked, read from the recipe alone."""
    if recipe.model.kind != "mlp":
        return f"model.kind = {recipe.model.kind!r} (only mlp stacks)"
    if recipe.model.norm == "group":
        return "group norm"
    if recipe.training.grad_norms or recipe.training.grad_norm_steps or recipe.training.step_size:
        return "per-step measurements (gradient norms, step size)"
    if recipe.regularization.weight_noise:
        return "weight noise (a callback at every step)"
    if recipe.regularization.l1 or recipe.regularization.l2:
        return "a penalty in the loss"
    if recipe.optimizer.options.get("clip_norm"):
        return "gradient clipping by the global norm"
    if recipe.schedule.name == "plateau":
        return "a schedule that reads each copy's validation loss"
    return None


def rng_state(device: torch.device) -> torch.Tensor:
    """The state of the default generator that a model's dropout on ``device`` draws from."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return torch.get_rng_state()


def stacked_trainer(recipes: Sequence[Recipe]) -> StackedTrainer:
    """The ``StackedTrainer`` of ``recipes``: each built as for a run of its own (``build``), then
    stacked, with the first recipe's optimizer over the stacked model; where ``shrinks_per_copy``,
    that optimizer without weight decay and proximal L1, which each copy takes from its own
    optimizer around the stacked step (``StackedTrainer(..., shrink=True)``)."""
    trainers, states = [], []
    for recipe in recipes:
        trainers.append(build(recipe))
        states.append(rng_state(trainers[-1].device))  # what the run's dropout would draw from next
    problem = stack_problem(trainers)
    if problem:
        raise ReglabError(f"these runs cannot be stacked: {problem}")
    o, shrink = recipes[0].optimizer, shrinks_per_copy(recipes[0])
    options = {**o.options, "weight_decay": 0.0, "l1_proximal": 0.0} if shrink else o.options
    return StackedTrainer(
        trainers, states, lambda m: build_optimizer(o.name, o.lr, options, m, o.decay_all), shrink=shrink
    )


def run_stacked(recipes: Sequence[Recipe], outs: Sequence[Path], threads: int | str | None = None) -> list[Result]:
    """Train ``recipes`` (one ``stack_key``: the same recipe on different seeds, or with other
    batch transforms) as one stacked model and write each into its folder of ``outs`` as
    ``run_recipe`` does (a finished checkpoint, history, summary; no curves). The caller holds
    the folders (a study's trial leases)."""
    if len({stack_key(r) for r in recipes}) > 1:
        raise ReglabError(
            "stacked runs must share their recipe except the seed, what their batches go through, early stopping "
            f"and the optimizer's weight decay and proximal L1 ({', '.join(PER_COPY + SHRINK_OPTIONS)})"
        )
    stacked = stacked_trainer(recipes)
    trainers = stacked.trainers
    results = []
    header = f"recipe as run by reglab (stacked with {len(recipes) - 1} other run(s) of its model); " + ", ".join(
        f"{k} {v}" for k, v in versions().items()
    )
    with run_threads(trainers[0], threads, copies=len(trainers)):  # the summaries record the threads used
        stacked.fit()
        for recipe, trainer, out in zip(recipes, trainers, outs):
            out.mkdir(parents=True, exist_ok=True)
            recipe.save(out / "recipe.toml", header=header)
            save({"recipe": recipe.to_dict(), "trainer": trainer.state_dict(), "finished": True},
                 out / "checkpoint.pt")  # fmt: skip
            results.append(write_results(recipe, trainer, out, plots=False))
    return results
