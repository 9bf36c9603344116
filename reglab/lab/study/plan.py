"""What a study runs: arms (a name and recipe changes from the base recipe) × seeds.

The built-in arms cover the curriculum: each is one technique switched on over the base
recipe, at a strength that regularizes the default study (MNIST-1D, MLP 2×256, Adam, 100 epochs)
without breaking it. A study file overrides strengths, adds arms, or changes the base:

```toml
name = "my-study"            # the study's name in the storage
seeds = 3                    # or a list: [0, 1, 2]
arms = ["baseline", "dropout", "mixup", "combination"]   # default: every built-in arm
base_recipe = "base.toml"    # or an inline [base] table with recipe sections

[base.training]
epochs = 50

[arm.dropout]                # a built-in arm at another strength
"model.dropout" = 0.5

[arm.wide-dropout]           # a new arm (list it in arms, or leave arms out): any recipe changes
"model.width" = 512
"model.dropout" = 0.3
```

Without a list of arms, a study runs the built-in arms that fit its data (``unfit_arms``): a
regression base recipe (``training.loss`` = ``mse`` or ``mae``, e.g. ``--dataset diabetes``)
leaves out the arms that treat targets as class labels (label smoothing, Mixup, CutMix), and
tabular data (samples of shape ``(D,)``) those that move or cut along a signal's or an image's
axes (shift, CutMix). Named explicitly, such an arm is refused with the reason.

The ``combination`` arm is not fixed in advance: it merges the best arms (one per family) found
to beat the baseline on validation loss (``reglab.lab.study.stats.combination_changes``), so it
runs once the other arms are finished.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reglab._checks import check_int, check_str
from reglab.errors import InputError, ReglabError, ReglabTypeError
from reglab.lab.recipe import Recipe, field_spec, read_toml
from reglab.lab.study.stats import BASELINE

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


def register_arm(name: str, description: str, changes: Mapping[str, Any], *, replace: bool = False) -> None:
    """Add a built-in arm: ``changes`` (dotted recipe keys -> values) over the base recipe,
    run by every study that does not list its arms (and by name in ``arms``)."""
    check_str("description", description)
    if not isinstance(name, str) or not ARM_NAME.fullmatch(name):
        raise ReglabError(
            f"arm name {name!r} must be letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    if name in (BASELINE, COMBINATION) or (name in ARMS and not replace):
        raise ReglabError(f"arm {name!r} is already defined; pass replace=True to replace it")
    if not isinstance(changes, Mapping) or not changes:
        raise ReglabTypeError(f"an arm's changes are a non-empty table of recipe keys, got {changes!r}")
    _arm(name, description, changes, Recipe())  # a bad key or value fails now, not in a study
    ARMS[name] = (description, dict(changes))


def _needs(changes: Mapping[str, Any]) -> set[str]:
    """What an arm's changes need of the data (the fields' ``needs``: labels, axes)."""
    return {need for key in changes for need in getattr(field_spec(key), "needs", ())}


@dataclass(frozen=True)
class Arm:
    name: str
    description: str
    changes: dict[str, Any]  # dotted recipe keys -> values
    recipe: Recipe  # base.updated(changes), seed left at the base's


@dataclass(frozen=True)
class Plan:
    """A validated study: its name, base recipe, arms (in order) and seeds."""

    name: str
    base: Recipe
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    combination: bool = False  # run the combination arm after the others
    left_out: dict[str, str] = field(
        default_factory=dict, compare=False
    )  # built-in arms that do not fit the data -> why; not in to_dict

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def recipe(self, arm: str, seed: int) -> Recipe:
        return self.arm(arm).recipe.updated({"training.seed": seed})

    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms] + ([COMBINATION] if self.combination else [])

    def to_dict(self) -> dict[str, Any]:
        """What identifies the study in storage: two plans with equal dicts run the same trials."""
        return {
            "name": self.name,
            "base": self.base.to_dict(),
            "arms": [{"name": a.name, "description": a.description, "changes": a.changes} for a in self.arms],
            "seeds": list(self.seeds),
            "combination": self.combination,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        base = Recipe.from_dict(d["base"])
        arms = tuple(_arm(a["name"], a["description"], a["changes"], base) for a in d["arms"])
        return cls(d["name"], base, arms, tuple(d["seeds"]), d["combination"])


def make_plan(
    base: Recipe | None = None,
    arms: Sequence[str] | None = None,
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    name: str = DEFAULT_NAME,
) -> Plan:
    """Build and validate a Plan: every arm's recipe is built here, so a bad arm fails now.

    Without ``arms`` the study runs every built-in arm that fits the base recipe's data and loss
    (``unfit_arms``; the data set is loaded to see its samples' shape), then the new arms of
    ``overrides``, then the combination; ``Plan.left_out`` says which arms were left out and why.
    """
    base = Recipe() if base is None else base
    if not isinstance(base, Recipe):
        raise ReglabTypeError(
            f"base must be a Recipe (Recipe(), Recipe.load(path) or Recipe().updated({{...}})), got "
            f"{type(base).__name__}"
        )
    if arms is not None and (isinstance(arms, str) or not all(isinstance(a, str) for a in arms)):
        raise ReglabTypeError(f"arms must be a list of arm names, such as ['baseline', 'dropout'], got {arms!r}")
    overrides = dict(overrides or {})
    for n in overrides:
        if not isinstance(n, str) or not ARM_NAME.fullmatch(n):
            raise ReglabError(
                f"arm name {n!r} must be letters, digits, '-', '_' or '.', starting with a letter or digit (it names "
                "a folder)"
            )
    if overrides.get(BASELINE):
        raise ReglabError(
            "the baseline arm is the base recipe: change it under [base] in the study file (or with flags), not "
            "[arm.baseline]"
        )
    if not check_str("name", name).strip():
        raise ReglabError(f"the study's name must not be empty, got {name!r}")
    known = {**ARMS, **{k: ("user arm", {}) for k in overrides if k not in ARMS}}
    left_out: dict[str, str] = {}
    if arms is None:
        left_out = unfit_arms(base, input_shape(base))
        names = [
            *[a for a in ARMS if a != COMBINATION and a not in left_out],
            *[n for n in overrides if n not in ARMS],
            COMBINATION,
        ]
    else:
        names = list(arms)
    if not names:
        raise ReglabError("the study has no arms; name at least one (known: " + ", ".join(known) + ")")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ReglabError(
            f"unknown arm {unknown[0]!r}; known arms: {', '.join(known)} (or define it under [arm.NAME] in a study "
            "file)"
        )
    if len(set(names)) != len(names):
        raise ReglabError(f"arms must be distinct, got {names}")
    if COMBINATION in overrides:
        raise ReglabError("the combination arm is derived from the results; it takes no changes")
    built = []
    for n in names:
        if n == COMBINATION:
            continue
        description, changes = known[n]
        if n in overrides:
            description, changes = (
                ("user arm" if n not in ARMS else f"{ARMS[n][0]} (strength set by the study file)"),
                dict(overrides[n]),
            )
        built.append(_arm(n, description, changes, base))
    for n in sorted(
        set(overrides) - set(names)
    ):  # defined but not run now: checked all the same, so a typo fails today
        _arm(n, "", overrides[n], base)
    combination = COMBINATION in names
    if combination and BASELINE not in names:
        raise ReglabError("the combination arm needs the baseline arm to compare with")
    return Plan(check_str("name", name), base, tuple(built), _seeds(seeds), combination, left_out)


def unfit_arms(base: Recipe, input_shape: Sequence[int]) -> dict[str, str]:
    """Built-in arms that do not fit the base recipe's task or samples of ``input_shape``,
    each with the reason."""
    out = {}
    needs = {a: _needs(changes) for a, (_, changes) in ARMS.items()}
    if len(input_shape) < 2:
        axes = [a for a in ARMS if "axes" in needs[a]]
        out.update({a: f"needs signals or images; samples here have shape {tuple(input_shape)}" for a in axes})
    if base.training.regression:
        out.update(
            {
                a: f"needs class labels; training.loss = {base.training.loss!r} is a regression loss"
                for a in ARMS
                if "labels" in needs[a]
            }
        )
    return {a: out[a] for a in ARMS if a in out}


def input_shape(base: Recipe) -> tuple[int, ...]:
    """The shape of one input sample of the base recipe's data set (loaded for its seed)."""
    from reglab.data import load_data

    return load_data(base.data, base.training.seed, regression=base.training.regression).input_shape


def _arm(name: str, description: str, changes: Mapping[str, Any], base: Recipe) -> Arm:
    changes = dict(changes)
    resolved = dict(changes)
    if resolved.get("model.width") == "half":  # relative to the base's (possibly default) width
        resolved["model.width"] = max(1, base.model.resolved_width // 2)
    try:
        recipe = base.updated(resolved)
    except InputError as e:
        raise e.within(f"arm {name!r}")
    return Arm(name, description, changes, recipe)


def _seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(seeds, Sequence) and not isinstance(seeds, str):
        out = tuple(check_int(f"seeds[{i}]", s, low=0) for i, s in enumerate(seeds))
        if not out or len(set(out)) != len(out):
            raise ReglabError(f"seeds must be a non-empty list of distinct integers, got {list(seeds)}")
        return out
    return tuple(range(check_int("seeds", seeds, low=1)))


def load_study_file(path: str | Path) -> dict[str, Any]:
    """Read a study TOML file into ``make_plan`` keyword arguments (``base`` as a Recipe)."""
    path = Path(path)
    d = read_toml(path, "study file")
    try:
        return _study_arguments(d, path)
    except InputError as e:
        if e.file is None:  # an error about the study file's content (a base_recipe's names its own file)
            e.within(f"study file {path}")
        raise


def _study_arguments(d: dict[str, Any], path: Path) -> dict[str, Any]:
    allowed = {"name", "seeds", "arms", "arm", "base", "base_recipe"}
    extra = sorted(set(d) - allowed)
    if extra:
        raise ReglabError(f"unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")
    out: dict[str, Any] = {}
    if "base" in d and "base_recipe" in d:
        raise ReglabError("give either base_recipe or a [base] table, not both")
    if "base_recipe" in d:
        out["base"] = Recipe.load(path.parent / check_str("base_recipe", d["base_recipe"]))
    elif "base" in d:
        out["base"] = Recipe.from_dict(d["base"], table="base")
    if "name" in d:
        out["name"] = check_str("name", d["name"])
    if "seeds" in d:
        out["seeds"] = _seeds(d["seeds"])
    if "arms" in d:
        if not isinstance(d["arms"], list):
            raise ReglabTypeError(f"arms must be a list of arm names, got {d['arms']!r}")
        out["arms"] = [check_str(f"arms[{i}]", a) for i, a in enumerate(d["arms"])]
    if "arm" in d:  # [arm.NAME] tables: strengths of built-in arms, or new arms (which join the default list)
        tables = _table(d["arm"], "arm")
        out["overrides"] = {name: _flatten(table, f"arm.{name}") for name, table in tables.items()}
    return out


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReglabTypeError(f"{where} must be a table, got {value!r}")
    return value


def _flatten(table: Any, where: str) -> dict[str, Any]:
    """``{"model": {"dropout": 0.5}}`` or ``{"model.dropout": 0.5}`` -> ``{"model.dropout": 0.5}``."""
    out: dict[str, Any] = {}
    for key, value in _table(table, where).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in _flatten(value, f"{where}.{key}").items()})
        else:
            out[key] = value
    return out
