"""The arms a study can run: the ablation's built-in arms (``ARMS``), and the arms a sweep
generates (``sweep_arms``), one per value of a recipe key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reglab.errors import ReglabError, ReglabTypeError
from reglab.lab.recipe import field_spec

COMBINATION = "combination"
DEFAULT_NAME = "regularization"  # the built-in study: `reglab study` alone
ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # an arm's runs live in OUT/runs/NAME-seedS-HASH

# name -> (what it does, recipe changes). Strengths are chosen for the default study: each
# measurably lowers MNIST-1D's validation loss versus the baseline over three seeds.
ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline": ("the base recipe, no regularization", {}),
    "early-stopping": (
        "stop 10 epochs after the best validation loss, restore the best weights",
        {"early_stopping.enabled": True},
    ),
    "l2": ("coupled L2: λ·W added to the gradient (weights only)", {"optimizer.options.weight_decay": 1e-2}),
    "weight-decay": (
        "decoupled weight decay (AdamW): W ← W − ηλW",
        {"optimizer.options.weight_decay": 0.5, "optimizer.options.decoupled": True},
    ),
    "l1-proximal": (
        "proximal L1: soft-threshold by ηλ after each step, exact zeros",
        {"optimizer.options.l1_proximal": 0.1},
    ),
    "dropout": ("dropout p = 0.3 after each hidden layer", {"model.dropout": 0.3}),
    "batch-norm": ("batch normalization in each hidden layer", {"model.norm": "batch"}),
    "input-noise": ("Gaussian noise σ = 0.3 on training inputs", {"regularization.input_noise": 0.3}),
    "shift": ("random shifts of up to 4 samples", {"augment.shift": 4}),
    "label-smoothing": ("label smoothing ε = 0.1", {"mixing.label_smoothing": 0.1}),
    "mixup": ("Mixup α = 0.4", {"mixing.mixup_alpha": 0.4}),
    "cutmix": ("CutMix α = 1", {"mixing.cutmix_alpha": 1.0}),
    "half-width": ("smaller capacity: half the hidden width", {"model.width": "half"}),
    COMBINATION: ("the best arm of each family that beat the baseline on validation loss (at most 3), together", {}),
}
DEFAULT_SEEDS = 3


def sweep_arms(sweeps: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The arms of each sweep axis, one per value, in order: ``{"model.width": [8, 16]}`` gives
    ``width-8`` and ``width-16``, each changing that one key of the base recipe (axes are swept one
    at a time, not as a grid). An arm is named by the key's last part (the whole key, dots as
    dashes, when two axes share it) and the value."""
    if not isinstance(sweeps, Mapping):
        raise ReglabTypeError(f"sweep must be a table of recipe keys and lists of values, got {sweeps!r}")
    lasts = [k.rsplit(".", 1)[-1] for k in sweeps]
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, values in sweeps.items():
        if not isinstance(values, (list, tuple)) or isinstance(values, str):
            raise ReglabTypeError(f"sweep {key!r} must be a list of values, such as [8, 16, 32], got {values!r}")
        if not values:
            raise ReglabError(f"sweep {key!r} is empty; give at least one value")
        if field_spec(key) is None:
            raise ReglabError(
                f"sweep {key!r}: no recipe field is called {key!r} (see reglab study --help for the fields)"
            )
        texts = [_value_text(key, v) for v in values]
        if len(set(texts)) != len(texts):
            raise ReglabError(f"sweep {key!r} repeats a value: {list(values)}")
        last = key.rsplit(".", 1)[-1]
        label = (last if lasts.count(last) == 1 else key.replace(".", "-")).replace("_", "-")
        for value, text in zip(values, texts):
            out[f"{label}-{text}"] = (f"sweep: {key} = {value!r}", {key: value})
    return out


def _value_text(key: str, value: Any) -> str:
    """A sweep value as it appears in its arm's name (and folder name)."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (int, str)):
        text = str(value)
    else:
        raise ReglabTypeError(f"sweep {key!r}: a value must be a number, a boolean or a name, got {value!r}")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", text):  # after "KEY-" in the arm's name
        raise ReglabError(f"sweep {key!r}: the value {value!r} cannot name an arm (letters, digits, '-', '_', '.')")
    return text
