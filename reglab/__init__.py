"""reglab: regularization and optimization techniques for PyTorch, and a lab to compare them.

The techniques are re-exported flat (``reglab.AdamW``, ``reglab.mixup``, ``reglab.Penalty``,
``reglab.EarlyStopping``); each lives in its family's subpackage (``reglab.optim``,
``reglab.augment``, ``reglab.regularize``, ``reglab.train``), which also holds the pieces used
less often. ``scale`` belongs to two families (an optimizer piece and an augmentation) and is
left to them. The lab (recipes, runs, studies, the command) is ``reglab.lab``; ``reglab.Recipe``,
``reglab.train_recipe`` and ``reglab.run_recipe`` load it on first use.

>>> import reglab
>>> recipe = reglab.Recipe.from_dict({"training": {"epochs": 3}})
>>> result = reglab.fit(recipe)  # doctest: +SKIP
>>> result.diagnosis.verdict  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch

from reglab._version import __version__ as __version__
from reglab.augment import (
    Augment,
    LabelSmoothing,
    Mixing,
    cutmix,
    cutout,
    erase,
    flip,
    mixup,
    one_hot,
    register_augmentation,
    rotate,
    shift,
    smooth_labels,
    soft_cross_entropy,
    translate,
)
from reglab.data import Data, load_data, register_dataset
from reglab.errors import InputError, ReglabError, ReglabTypeError
from reglab.models import build_model, cnn, mlp, register_model, rnn
from reglab.optim import SGD, Adadelta, Adagrad, Adam, AdamW, Optimizer, RMSprop, chain, decay_groups
from reglab.regularize import InputNoise, Penalty, WeightNoise, gaussian_noise, l1_penalty, l2_penalty
from reglab.train import (
    Callback,
    Checkpointer,
    Diagnosis,
    EarlyStopping,
    GradNorms,
    History,
    LRScheduler,
    ProgressBar,
    Trainer,
    diagnose,
)
from reglab.train import fit as _fit

_LAB = {  # the lab's names, imported on first use: ``import reglab.train`` does not load the lab
    "Recipe": "reglab.lab.recipe",
    "Result": "reglab.lab.run",
    "run_recipe": "reglab.lab.run",
    "train_recipe": "reglab.lab.run",
    "register_arm": "reglab.lab.study.plan",
}


def __getattr__(name: str) -> Any:
    if name in _LAB:
        import importlib

        value = getattr(importlib.import_module(_LAB[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'reglab' has no attribute {name!r}")


def fit(model_or_recipe: Any, data: Data | None = None, optimizer: Any = None, **options: Any) -> Any:
    """Train a Recipe (returns a ``Result``) or a model on ``data`` with ``optimizer``
    (keyword arguments as ``reglab.train.fit``; returns a ``History``)."""
    from reglab.lab.recipe import Recipe
    from reglab.lab.run import train_recipe

    if isinstance(model_or_recipe, Recipe):
        if data is not None or optimizer is not None or options:
            raise ReglabTypeError("fit(recipe) takes no other arguments: the recipe describes the whole run")
        return train_recipe(model_or_recipe)
    if data is None and optimizer is None and not isinstance(model_or_recipe, torch.nn.Module):
        raise ReglabTypeError(
            f"fit takes a Recipe, or a model with data and an optimizer; got {type(model_or_recipe).__name__} "
            "(a dict of changes goes through Recipe().updated({...}))"
        )
    if data is None or optimizer is None:
        raise ReglabTypeError("fit(model, data, optimizer, epochs=..., batch_size=...) needs data and an optimizer")
    return _fit(model_or_recipe, data, optimizer, **options)


__all__ = [
    # the lab: recipes, data, models, training
    "Recipe", "Data", "load_data", "build_model", "mlp", "cnn", "rnn", "fit", "train_recipe", "run_recipe",
    "Trainer", "History", "Result", "Diagnosis", "diagnose",
    # registries open to your own pieces, and the errors of bad input
    "register_model", "register_dataset", "register_augmentation", "register_arm",
    "InputError", "ReglabError", "ReglabTypeError",
    # callbacks
    "Callback", "EarlyStopping", "Checkpointer", "GradNorms", "LRScheduler", "ProgressBar",
    # optimizers (drop-ins for torch.optim) and their composition
    "SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "Optimizer", "chain", "decay_groups",
    # penalties and noise
    "Penalty", "l1_penalty", "l2_penalty", "InputNoise", "WeightNoise", "gaussian_noise",
    # augmentation, labels, mixing
    "Augment", "flip", "shift", "translate", "rotate", "cutout", "erase",
    "one_hot", "smooth_labels", "LabelSmoothing", "soft_cross_entropy", "Mixing", "mixup", "cutmix",
]  # fmt: skip
