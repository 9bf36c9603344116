"""From a Recipe to a trained model and the files a person can look at.

``reglab.lab.build.build(recipe)`` turns a Recipe into a ready ``Trainer``; ``train_recipe(recipe)``
trains it in memory, and ``run_recipe(recipe, out)`` trains it with a checkpoint per epoch and
writes

- ``recipe.toml``: the recipe as run, with the versions of Python, torch and reglab on top;
- ``history.json``: one object per epoch (``epoch, train_loss, train_acc, valid_loss,
  valid_acc, lr, time``, and weight statistics ``zero_frac, tiny_frac, weight_l1,
  weight_l2, first_zero_frac, first_tiny_frac``; no accuracies for a regression loss;
  ``grad_norm_1..L`` per layer with ``training.grad_norms``, ``grad_norm_steps`` with
  ``training.grad_norm_steps``, ``step_size`` with ``training.step_size``);
- ``summary.json``: best and stopped epoch, stop reason, test loss/accuracy, the chance-level
  loss, the fractions of exactly-zero weights (``zero_frac``, ``first_zero_frac``), the test
  set's mean confidence and calibration error (``test_confidence``, ``test_ece``) or, for a
  regression, its squared and absolute errors (``test_mse``, ``test_mae``), the parameter and
  training-sample counts, the diagnosis, the recipe and the versions (and the class names, when
  the data named its classes; Keskar's ``sharpness`` of the final weights, when ``training.sharpness`` is set);
- ``curves.png``: train vs validation loss and accuracy (loss only for regression), best epoch
  marked, and the per-layer gradient norms when recorded;
- ``checkpoint.pt``: everything needed to resume (``resume=True``) to the same final weights
  and history as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reglab._checks import check_folder, check_int
from reglab._files import atomic_write, folder_lock, make_folder
from reglab._version import __version__
from reglab.data import Data
from reglab.errors import InputError, ReglabError
from reglab.lab.build import build
from reglab.lab.recipe import Recipe
from reglab.train.callbacks import Callback, EarlyStopping, ProgressBar
from reglab.train.checkpoint import Checkpointer, DamagedCheckpointError, load, save
from reglab.train.diagnose import Diagnosis, diagnose
from reglab.train.loop import History, Trainer
from reglab.train.losses import chance_loss


class RunExistsError(InputError, FileExistsError):
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
    return {"python": platform.python_version(), "torch": torch.__version__, "reglab": __version__}


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
    threads: int | str | None = None,
) -> Result:
    """Train ``recipe`` into the folder ``out`` (see the module docstring for the files).

    A folder that already holds a run is refused unless ``resume``; resuming continues from the
    last checkpoint (written every ``checkpoint_every`` epochs and at the end), and a finished
    run is only re-reported. ``plots=False`` skips ``curves.png``; ``data`` reuses data already
    loaded for this recipe's data section and seed. ``threads``: torch's intra-op threads for the
    run (restored after); ``"auto"`` picks them from the model's size, at most the current number
    (``reglab.train.threads``); ``None`` leaves them as they are.
    """
    out = check_folder("out", out)
    ckpt = out / "checkpoint.pt"
    state = None
    if ckpt.exists():
        if not resume:
            raise RunExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
        state = _resume_state(ckpt)
        saved = Recipe.from_dict(state["recipe"])
        if saved != recipe:
            raise ReglabError(
                f"the recipe differs from the one the run in {out} was started with "
                f"({', '.join(differences(saved.to_dict(), recipe.to_dict()))}); "
                "resume it with the same recipe, or start the new one in another folder"
            )
    extra = [ProgressBar(out.name)] if progress else []
    checkpointer = Checkpointer(ckpt, extra={"recipe": recipe.to_dict()}, every=checkpoint_every)
    trainer = build(recipe, callbacks=[*extra, checkpointer], data=data)  # bad data fails here, before any file
    with run_threads(trainer, threads):
        return _run(recipe, trainer, out, ckpt, state, plots)


@contextlib.contextmanager
def run_threads(trainer: Trainer, threads: int | str | None, copies: int = 1):
    """Torch's intra-op threads for the block: ``threads``, or ``"auto"`` (``reglab.train.threads``
    for ``copies`` copies of the trainer's model trained stacked, at most the current number),
    or ``None`` (unchanged); restored after."""
    before = torch.get_num_threads()
    if threads == "auto":
        from reglab.train.threads import threads_for

        batch = trainer.data.x_train[: trainer.batch_size]
        threads = threads_for(trainer.model, batch, available=before, copies=copies)
    if threads is not None:
        torch.set_num_threads(check_int("threads", threads, low=1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run(recipe: Recipe, trainer: Trainer, out: Path, ckpt: Path, state: Any, plots: bool) -> Result:
    make_folder(out)
    with folder_lock(out):  # a second process on this folder is refused, saying who holds it
        if ckpt.exists() and state is None:  # another run started here while this one was being built
            raise RunExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
        if state is not None:  # read again under the lock: the newest, should a run have ended since
            state = _resume_state(ckpt)
        header = "recipe as run by reglab; " + ", ".join(f"{k} {v}" for k, v in versions().items())
        recipe.save(out / "recipe.toml", header=header)
        if state is not None:
            trainer.load_state_dict(state["trainer"])
        if state is None or not state["finished"]:
            trainer.fit()
            save({"recipe": recipe.to_dict(), "trainer": trainer.state_dict(), "finished": True}, ckpt)
        return write_results(recipe, trainer, out, plots)


def write_results(recipe: Recipe, trainer: Trainer, out: Path, plots: bool = True) -> Result:
    """A trained run's ``history.json``, ``summary.json`` and (``plots``) ``curves.png``."""
    result = _finish(recipe, trainer)
    write_json(out / "history.json", list(result.history))
    write_json(out / "summary.json", result.summary)
    if plots:
        from reglab.lab.plots import plot_curves  # matplotlib: imported only when a figure is drawn

        plot_curves(
            result.history, out / "curves.png", best_epoch=result.diagnosis.best_epoch, title=out.name,
            loss=recipe.training.loss,
        )  # fmt: skip
    return result


def _resume_state(ckpt: Path) -> dict[str, Any]:
    try:
        return load(ckpt)
    except DamagedCheckpointError as e:
        raise e.within(
            f"cannot resume the run in {ckpt.parent}: delete {ckpt.name} to start it over there, "
            "or choose another --out"
        ) from e


def _finish(recipe: Recipe, trainer: Trainer) -> Result:
    """Evaluate on the test set, once, and summarize."""
    data = trainer.data
    test_loss, test_acc = trainer.evaluate(data.x_test, data.y_test)
    chance = chance_loss(recipe.training.loss, data.y_train, data.num_classes)
    diagnosis = diagnose(trainer.history, chance=chance)
    stopper = next((cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)), None)
    extra = {}
    widths = {"sharpness": recipe.training.sharpness, "sharpness_wide": recipe.training.sharpness_wide}
    for key, eps in widths.items():
        if eps:
            from reglab.train.sharpness import sharpness  # imports scipy.optimize: only when asked

            extra[key] = sharpness(trainer.model, data.x_train, data.y_train, trainer.loss_fn, eps,
                                   seed=recipe.training.seed)  # fmt: skip
    extra.update(_test_metrics(trainer))
    extra.update(_probes(trainer))
    summary = {
        "best_epoch": diagnosis.best_epoch,
        "stopped_epoch": trainer.epoch,
        "stop_reason": trainer.stop_reason,
        "restored_epoch": stopper.best_epoch if stopper and stopper.restore_best else None,
        "test_loss": test_loss,
        **({"test_acc": test_acc} if test_acc is not None else {}),  # classification only
        "chance_loss": chance,  # the diagnosis's reference: ln K, or a constant prediction's loss
        **extra,  # Keskar's sharpness of the final weights, when asked
        **zero_fractions(trainer.model),  # exact zeros: what proximal L1 makes (all layers, first layer)
        "diagnosis": diagnosis.to_dict(),
        "train_seconds": sum(r["time"] for r in trainer.history),
        "threads": torch.get_num_threads(),  # intra-op threads change summation order: part of reproducing a run
        "matmul": trainer.matmul,  # who multiplied the Linear layers (auto resolved): rounds differently, as threads do
        "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "train_samples": len(data.x_train),
        **({"classes": list(data.classes)} if data.classes else {}),  # label i is classes[i]
        "recipe": recipe.to_dict(),
        "versions": versions(),
    }
    return Result(trainer.model, trainer.history, diagnosis, summary)


def _test_metrics(trainer: Trainer) -> dict[str, float]:
    """What the test loss alone does not say: for classes, the mean confidence and the expected
    calibration error (``reglab.train.calibration``); for a regression, the squared and the
    absolute error, so that runs trained with different losses are compared on one scale."""
    data = trainer.data
    out = trainer.predict(data.x_test)
    if data.regression:
        err = out.double() - data.y_test.double()
        return {"test_mse": float((err**2).mean()), "test_mae": float(err.abs().mean())}
    from reglab.train.calibration import calibration

    return {f"test_{k}": v for k, v in calibration(out, data.y_test).items()}


def _probes(trainer: Trainer) -> dict[str, float]:
    """``reglab.train.probes`` on the returned model: the fraction of dead ReLU units on the
    validation inputs (ReLU-family models) and, with batch norm, the test accuracy with batch
    statistics in batches of the training batch size (``test_acc`` uses the running ones)."""
    from reglab.train.probes import batch_stats_accuracy, dead_fraction

    data, out = trainer.data, {}
    dead = dead_fraction(trainer.model, data.x_valid)
    if dead is not None:
        out["dead_frac"] = dead
    if trainer.classify:
        acc = batch_stats_accuracy(trainer.model, data.x_test, data.y_test, trainer.batch_size)
        if acc is not None:
            out["test_acc_batch_stats"] = acc
    return out


def zero_fractions(model: torch.nn.Module) -> dict[str, float]:
    """The fractions of exactly-zero weights of the model's weight matrices (biases and norm
    parameters left out): ``zero_frac`` over all of them, ``first_zero_frac`` in the first."""
    from reglab.regularize.weights import weights

    flat = [w.detach().flatten() for w in weights(model)]
    if not flat:
        return {}
    zeros = sum(int((w == 0).sum()) for w in flat)
    return {
        "zero_frac": zeros / sum(w.numel() for w in flat),
        "first_zero_frac": float((flat[0] == 0).double().mean()),
    }


def write_json(path: Path, obj: Any) -> None:
    """Write strict JSON (NaN/Inf become null), atomically."""
    atomic_write(path, json.dumps(finite(obj), indent=1))


def finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
