"""reglab: regularization and optimization techniques for PyTorch, and a lab to compare them.

>>> import reglab
>>> recipe = reglab.Recipe.from_dict({"training": {"epochs": 3}})
>>> result = reglab.fit(recipe)  # doctest: +SKIP
>>> result.diagnosis.verdict  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from reglab.data import Data, load_data
from reglab.models import build_model, cnn, mlp
from reglab.recipe import Recipe
from reglab.train import (
    Callback,
    Checkpointer,
    Diagnosis,
    EarlyStopping,
    History,
    ProgressBar,
    Result,
    Trainer,
    diagnose,
    run_recipe,
)
from reglab.train import fit as _fit
from reglab.train import train_recipe


def fit(model_or_recipe: Any, data: Data | None = None, optimizer: Any = None, **options: Any) -> Any:
    """Train a Recipe (returns a ``Result``) or a model on ``data`` with ``optimizer``
    (keyword arguments as ``reglab.train.fit``; returns a ``History``)."""
    if isinstance(model_or_recipe, Recipe):
        if data is not None or optimizer is not None or options:
            raise TypeError("fit(recipe) takes no other arguments: the recipe describes the whole run")
        return train_recipe(model_or_recipe)
    if data is None or optimizer is None:
        raise TypeError("fit(model, data, optimizer, epochs=..., batch_size=...) needs data and an optimizer")
    return _fit(model_or_recipe, data, optimizer, **options)


__all__ = [
    "Callback",
    "Checkpointer",
    "Data",
    "Diagnosis",
    "EarlyStopping",
    "History",
    "ProgressBar",
    "Recipe",
    "Result",
    "Trainer",
    "build_model",
    "cnn",
    "diagnose",
    "fit",
    "load_data",
    "mlp",
    "run_recipe",
]
