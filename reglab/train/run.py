"""From a Recipe to a trained model and the files a person can look at.

``build(recipe)`` turns a Recipe into a ready ``Trainer`` (data, model, optimizer, callbacks).
``run_recipe(recipe, out)`` trains it with a checkpoint per epoch and writes

- ``recipe.toml``: the recipe as run, with the versions of Python, torch and reglab on top;
- ``history.json``: one object per epoch (``epoch, train_loss, train_acc, valid_loss,
  valid_acc, lr, time``, and weight statistics ``zero_frac, tiny_frac, weight_l1,
  weight_l2, first_zero_frac, first_tiny_frac``; no accuracies for a regression loss;
  ``grad_norm_1..L`` per layer with ``training.grad_norms``);
- ``summary.json``: best and stopped epoch, stop reason, test loss/accuracy, the chance-level
  loss, the diagnosis, the recipe and the versions (and the class names, when the data named
  its classes; Keskar's ``sharpness`` of the final weights, when ``training.sharpness`` is set);
- ``curves.png``: train vs validation loss and accuracy (loss only for regression), best epoch
  marked, and the per-layer gradient norms when recorded;
- ``checkpoint.pt``: everything needed to resume (``resume=True``) to the same final weights
  and history as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reglab._checks import check_folder
from reglab.augment import Augment, LabelSmoothing, Mixing
from reglab.data import Data, load_data
from reglab.models import build_model
from reglab.optim import build_optimizer
from reglab.optim.schedules import build_scheduler
from reglab.recipe import Recipe
from reglab.regularize import InputNoise, Penalty, WeightNoise
from reglab.train.callbacks import Callback, EarlyStopping, GradNorms, LRScheduler, ProgressBar, WeightStats
from reglab.train.checkpoint import Checkpointer, load, save
from reglab.train.diagnose import Diagnosis, diagnose
from reglab.train.loop import History, Trainer
from reglab.train.losses import LOSSES, chance_loss


class RunExistsError(FileExistsError):
    """The output folder already holds a run and resuming was not asked for."""


@dataclass
class Result:
    """What a finished run returns: the trained model (best weights restored if asked), its
    History, the Diagnosis and the summary written to ``summary.json``."""

    model: torch.nn.Module
    history: History
    diagnosis: Diagnosis
    summary: dict[str, Any]


def versions() -> dict[str, str]:
    import reglab

    return {"python": platform.python_version(), "torch": torch.__version__, "reglab": reglab.__version__}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"training.device = {name!r} but CUDA is not available here; use cpu or auto")
    return torch.device(name)


def build(recipe: Recipe, callbacks: Sequence[Callback] = (), data: Data | None = None) -> Trainer:
    """Build data, model, optimizer and callbacks of ``recipe`` into a Trainer, seeded."""
    device = resolve_device(recipe.training.device)
    seed = recipe.training.seed
    data = (data or load_data(recipe.data, seed, regression=recipe.training.regression)).to(device)
    if data.regression != recipe.training.regression:
        raise ValueError(
            f"training.loss = {recipe.training.loss!r} does not fit the data given ({'regression targets' if data.regression else 'class labels'})"
        )
    torch.manual_seed(seed)
    model = build_model(recipe.model, data.input_shape, data.num_outputs).to(device)
    o = recipe.optimizer
    optimizer = build_optimizer(o.name, o.lr, o.options, model, decay_all=o.decay_all)
    cbs: list[Callback] = []
    es = recipe.early_stopping
    if es.enabled:
        cbs.append(EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta, es.start_from_epoch, es.restore_best))
    scheduler = build_scheduler(recipe.schedule, optimizer, recipe.training.epochs)
    if scheduler is not None:
        cbs.append(LRScheduler(scheduler, recipe.schedule.monitor))
    reg = recipe.regularization
    if reg.weight_noise:
        cbs.append(WeightNoise(reg.weight_noise))
    cbs.append(WeightStats())
    if recipe.training.grad_norms:
        cbs.append(GradNorms())
    return Trainer(
        model,
        data,
        optimizer,
        epochs=recipe.training.epochs,
        batch_size=recipe.data.batch_size,
        loss_fn=LOSSES[recipe.training.loss],
        callbacks=cbs + list(callbacks),
        batch_transforms=batch_transforms(recipe, data),
        loss_terms=[Penalty(reg.l1, reg.l2)] if reg.l1 or reg.l2 else [],
        seed=seed,
    )


def batch_transforms(recipe: Recipe, data: Data) -> list:
    """Training-only batch transforms of ``recipe``: augmentation, input noise, label
    smoothing, mixing (in that order)."""
    out: list = []
    if recipe.augment.active:
        out.append(Augment(recipe.augment, data.input_shape))
    if recipe.regularization.input_noise:
        out.append(InputNoise(recipe.regularization.input_noise))
    m = recipe.mixing
    if m.label_smoothing:
        out.append(LabelSmoothing(data.num_classes, m.label_smoothing))
    if m.mixup_alpha or m.cutmix_alpha:
        if m.cutmix_alpha and len(data.input_shape) not in (2, 3):
            raise ValueError(
                f"mixing.cutmix_alpha needs signals or images; this data set's samples have shape {data.input_shape}"
            )
        out.append(Mixing(data.num_classes, m.mixup_alpha, m.cutmix_alpha, m.switch_prob, m.prob, m.mode))
    return out


def train_recipe(recipe: Recipe, callbacks: Sequence[Callback] = ()) -> Result:
    """Train ``recipe`` in memory (no files) and return the Result."""
    trainer = build(recipe, callbacks)
    trainer.fit()
    return _finish(recipe, trainer)


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``["training.epochs: 3 -> 6", ...]``: the leaves of two nested dicts that differ."""

    def flat(d: dict[str, Any], at: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{at}{k}.") if isinstance(v, dict) else {f"{at}{k}": v})
        return out

    a, b = flat(old, prefix), flat(new, prefix)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def run_recipe(
    recipe: Recipe,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    checkpoint_every: int = 1,
    data: Data | None = None,
) -> Result:
    """Train ``recipe`` into the folder ``out`` (see the module docstring for the files).

    A folder that already holds a run is refused unless ``resume``; resuming continues from the
    last checkpoint (written every ``checkpoint_every`` epochs and at the end), and a finished
    run is only re-reported. ``plots=False`` skips ``curves.png``; ``data`` reuses data already
    loaded for this recipe's data section and seed.
    """
    out = check_folder("out", out)
    ckpt = out / "checkpoint.pt"
    state = None
    if ckpt.exists():
        if not resume:
            raise RunExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
        state = load(ckpt)
        saved = Recipe.from_dict(state["recipe"])
        if saved != recipe:
            raise ValueError(
                f"the recipe differs from the one the run in {out} was started with ({', '.join(differences(saved.to_dict(), recipe.to_dict()))}); "
                "resume it with the same recipe, or start the new one in another folder"
            )
    extra = [ProgressBar(out.name)] if progress else []
    checkpointer = Checkpointer(ckpt, extra={"recipe": recipe.to_dict()}, every=checkpoint_every)
    trainer = build(recipe, callbacks=[*extra, checkpointer], data=data)  # bad data fails here, before any file
    out.mkdir(parents=True, exist_ok=True)
    header = "recipe as run by reglab; " + ", ".join(f"{k} {v}" for k, v in versions().items())
    recipe.save(out / "recipe.toml", header=header)
    if state is not None:
        trainer.load_state_dict(state["trainer"])
    if state is None or not state["finished"]:
        trainer.fit()
        save({"recipe": recipe.to_dict(), "trainer": trainer.state_dict(), "finished": True}, ckpt)
    result = _finish(recipe, trainer)
    write_json(out / "history.json", list(result.history))
    write_json(out / "summary.json", result.summary)
    if plots:
        from reglab.train.plots import plot_curves

        plot_curves(
            result.history,
            out / "curves.png",
            best_epoch=result.diagnosis.best_epoch,
            title=out.name,
            loss=recipe.training.loss,
        )
    return result


def _finish(recipe: Recipe, trainer: Trainer) -> Result:
    """Evaluate on the test set, once, and summarize."""
    data = trainer.data
    test_loss, test_acc = trainer.evaluate(data.x_test, data.y_test)
    chance = chance_loss(recipe.training.loss, data.y_train, data.num_classes)
    diagnosis = diagnose(trainer.history, chance=chance)
    stopper = next((cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)), None)
    extra = {}
    if recipe.training.sharpness:
        from reglab.train.sharpness import sharpness  # imports scipy.optimize: only when asked

        extra["sharpness"] = sharpness(
            trainer.model,
            data.x_train,
            data.y_train,
            trainer.loss_fn,
            recipe.training.sharpness,
            seed=recipe.training.seed,
        )
    summary = {
        "best_epoch": diagnosis.best_epoch,
        "stopped_epoch": trainer.epoch,
        "stop_reason": trainer.stop_reason,
        "restored_epoch": stopper.best_epoch if stopper and stopper.restore_best else None,
        "test_loss": test_loss,
        **({"test_acc": test_acc} if test_acc is not None else {}),  # classification only
        "chance_loss": chance,  # the diagnosis's reference: ln K, or a constant prediction's loss
        **extra,  # Keskar's sharpness of the final weights, when asked
        "diagnosis": diagnosis.to_dict(),
        "train_seconds": sum(r["time"] for r in trainer.history),
        "threads": torch.get_num_threads(),  # intra-op threads change summation order: part of reproducing a run
        "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
        **({"classes": list(data.classes)} if data.classes else {}),  # label i is classes[i]
        "recipe": recipe.to_dict(),
        "versions": versions(),
    }
    return Result(trainer.model, trainer.history, diagnosis, summary)


def write_json(path: Path, obj: Any) -> None:
    """Write strict JSON (NaN/Inf become null) through a temporary file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(obj), indent=1))
    tmp.replace(path)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
