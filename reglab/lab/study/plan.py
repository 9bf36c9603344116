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

A ``[sweep]`` table (``"model.width" = [64, 1024]``) adds one arm per value (``sweep_arms``); a
file with sweeps and no ``arms`` runs the baseline and the sweep points, and an ``arms`` list
given with a sweep names the points it runs.

Without a list of arms, a study runs the built-in arms that fit its data (``unfit_arms``): a
regression base recipe (``training.loss`` = ``mse``, ``mae`` or ``huber``, e.g. ``--dataset diabetes``)
leaves out the arms that treat targets as class labels (label smoothing, Mixup, CutMix), and
tabular data (samples of shape ``(D,)``) those that move or cut along a signal's or an image's
axes (shift, CutMix). Named explicitly, such an arm is refused with the reason.

The ``combination`` arm is not fixed in advance: it merges the best arms (one per family) found
to beat the baseline on validation loss (``reglab.lab.study.stats.combination_changes``), so it
runs once the other arms are finished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reglab._checks import check_int, check_str
from reglab.errors import InputError, ReglabError, ReglabTypeError
from reglab.lab.recipe import Recipe, field_spec, read_toml
from reglab.lab.study.arms import ARM_NAME, ARMS, COMBINATION, DEFAULT_NAME, DEFAULT_SEEDS, sweep_arms
from reglab.lab.study.stats import BASELINE

__all__ = ["ARMS", "ARM_NAME", "COMBINATION", "DEFAULT_NAME", "DEFAULT_SEEDS", "Arm", "Plan", "make_plan", "sweep_arms"]


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
    versus: str = BASELINE  # the arm it is compared with; its own name: a reference itself (a baseline)

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "description": self.description, "changes": self.changes}
        return d if self.versus == BASELINE else {**d, "versus": self.versus}


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
    study: str = ""  # the built-in study whose claims and figures the report shows ("": the ablation's)
    sweeps: dict[str, list[Any]] = field(default_factory=dict)  # swept recipe key -> values (arms KEY-VALUE)

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def recipe(self, arm: str, seed: int) -> Recipe:
        return self.arm(arm).recipe.updated({"training.seed": seed})

    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms] + ([COMBINATION] if self.combination else [])

    def versus(self, arm: str) -> str:
        """The arm that ``arm`` is compared with (the baseline unless the study says otherwise)."""
        return next((a.versus for a in self.arms if a.name == arm), BASELINE)

    def to_dict(self) -> dict[str, Any]:
        """What identifies the study in storage: two plans with equal dicts run the same trials."""
        d = {
            "name": self.name,
            "base": self.base.to_dict(),
            "arms": [a.to_dict() for a in self.arms],
            "seeds": list(self.seeds),
            "combination": self.combination,
        }
        return {
            **d,
            **({"study": self.study} if self.study else {}),
            **({"sweeps": self.sweeps} if self.sweeps else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        base = Recipe.from_dict(d["base"])
        arms = tuple(
            _arm(a["name"], a["description"], a["changes"], base, a.get("versus", BASELINE)) for a in d["arms"]
        )
        return cls(
            d["name"], base, arms, tuple(d["seeds"]), d["combination"], study=d.get("study", ""),
            sweeps=dict(d.get("sweeps", {})),
        )  # fmt: skip


def make_plan(
    base: Recipe | None = None,
    arms: Sequence[str] | None = None,
    seeds: int | Sequence[int] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    name: str | None = None,
    sweeps: Mapping[str, Sequence[Any]] | None = None,
    study: str | None = None,
) -> Plan:
    """Build and validate a Plan: every arm's recipe is built here, so a bad arm fails now.

    ``study`` names the built-in study it starts from (``reglab.lab.study.chapters.STUDIES``;
    default ``regularization``), which gives the default base recipe, arms, sweeps, seeds and
    name, and the claims and figures of its report. Without ``arms`` the regularization study
    runs every built-in arm that fits the base recipe's data and loss (``unfit_arms``; the data
    set is loaded to see its samples' shape), then the new arms of ``overrides``, then the
    combination; ``Plan.left_out`` says which arms were left out and why. ``sweeps`` (recipe key ->
    values) adds one arm per value (``sweep_arms``); with sweeps and no ``arms``, the regularization
    study runs the baseline and the sweep points. ``arms`` given is exactly the arms that run.
    """
    from reglab.lab.study.chapters import study_spec

    spec = study_spec(DEFAULT_NAME if study is None else study)
    base = spec.base_recipe() if base is None else base
    seeds = spec.seeds if seeds is None else seeds
    name = spec.name if name is None else name
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
    own = sweep_arms(sweeps or {})  # the caller's sweeps (a study file's [sweep]), checked on their own
    all_sweeps = {**spec.sweeps, **dict(sweeps or {})}
    swept = sweep_arms(all_sweeps)
    for _, changes in swept.values():  # a value the field refuses: named as the sweep's, before anything else
        key, value = next(iter(changes.items()))
        try:
            base.updated({key: value})
        except InputError as e:
            raise ReglabError(f"sweep {key!r}: the value {value!r} is refused: {e}") from None
    builtin = spec.arm_table()  # name -> (description, changes, versus)
    for n in swept:
        if n in overrides or n in builtin:
            where = f"[arm.{n}]" if n in overrides else f"the built-in arm {n!r}"
            raise ReglabError(f"arm {n!r} is defined twice: by the sweep of {next(iter(swept[n][1]))} and by {where}")
    known = {
        **{k: (d, c) for k, (d, c, _) in builtin.items()},
        **{k: ("user arm", {}) for k in overrides if k not in builtin},
        **swept,
    }
    left_out: dict[str, str] = {}
    if arms is None:
        if spec.combination and not all_sweeps:
            left_out = unfit_arms(base, input_shape(base))
            names = [
                *[a for a in builtin if a not in left_out],
                *[n for n in overrides if n not in builtin],
                COMBINATION,
            ]
        elif spec.combination:  # a sweep over the ablation's base: the curve, not the ablation
            names = [BASELINE, *[n for n in overrides if n not in builtin], *swept]
        else:
            names = [*builtin, *[n for n in overrides if n not in builtin], *swept]
    else:
        names = list(arms)
        _check_against_sweeps(names, all_sweeps, swept, own)
    if not names:
        raise ReglabError("the study has no arms; name at least one (known: " + ", ".join(known) + ")")
    combination_known = {COMBINATION: None} if spec.combination else {}
    unknown = [n for n in names if n not in known and n not in combination_known]
    if unknown:
        raise ReglabError(
            f"unknown arm {unknown[0]!r}; known arms: {', '.join([*known, *combination_known])} (or define it under "
            "[arm.NAME] in a study file)"
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
        versus = builtin[n][2] if n in builtin else BASELINE
        if n in overrides:
            description, changes = (
                ("user arm" if n not in builtin else f"{builtin[n][0]} (strength set by the study file)"),
                dict(overrides[n]),
            )
        built.append(_arm(n, description, changes, base, versus if versus in names or versus == n else BASELINE))
    unused = [_arm(n, "", overrides[n], base) for n in sorted(set(overrides) - set(names))]
    _check_signals([*built, *unused])  # arms defined but not run now are checked all the same: a typo fails today
    combination = COMBINATION in names
    if combination and BASELINE not in names:
        raise ReglabError("the combination arm needs the baseline arm to compare with")
    return Plan(
        check_str("name", name), base, tuple(built), _seeds(seeds), combination, left_out,
        study=spec.name if spec.claims or spec.figures else "", sweeps={k: list(v) for k, v in all_sweeps.items()},
    )  # fmt: skip


def _check_against_sweeps(
    names: Sequence[str], sweeps: Mapping[str, Any], swept: Mapping[str, Any], own: Mapping[str, Any]
) -> None:
    """An arm list given with sweeps must agree with them: a name shaped like a point of a swept
    key must be one of its values, and a sweep the caller added must have a point in the list."""
    prefixes = {name.rsplit("-", 1)[0]: key for name, (_, changes) in swept.items() for key in changes}
    for n in names:
        if n not in swept and "-" in n and n.rsplit("-", 1)[0] in prefixes:
            key = prefixes[n.rsplit("-", 1)[0]]
            raise ReglabError(f"arm {n!r} is not a point of the sweep {key} = {list(sweeps[key])}")
    for key in {next(iter(changes)) for _, changes in own.values()}:
        points = [n for n, (_, changes) in own.items() if key in changes]
        if not any(p in names for p in points):
            raise ReglabError(
                f"the sweep of {key} adds the arms {', '.join(points)}, but the arm list ({', '.join(names)}) has none "
                "of them: list the points to run, or leave the arm list out to run the baseline and the whole sweep"
            )


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


def _check_signals(arms: Sequence[Arm]) -> None:
    """An arm whose model reads signals only (rnn, gru) on a data set of images is refused now,
    not when its first trial starts."""
    from reglab.models import MODEL_KINDS

    shapes: dict[tuple[str, str], tuple[int, ...]] = {}
    for arm in arms:
        r = arm.recipe
        if MODEL_KINDS[r.model.kind].signals:
            shape = shapes.setdefault((r.data.name, r.data.path), input_shape(r))
            if len(shape) > 2:
                raise ReglabError(
                    f"arm {arm.name!r}: model.kind = {r.model.kind!r} reads signals; {r.data.name} samples have shape "
                    f"{shape} (images): use model.kind = 'cnn' or 'mlp'"
                )


def input_shape(base: Recipe) -> tuple[int, ...]:
    """The shape of one input sample of the base recipe's data set (loaded for its seed)."""
    from reglab.data import load_data

    return load_data(base.data, base.training.seed, regression=base.training.regression).input_shape


def _arm(name: str, description: str, changes: Mapping[str, Any], base: Recipe, versus: str = BASELINE) -> Arm:
    changes = dict(changes)
    resolved = dict(changes)
    if resolved.get("model.width") == "half":  # relative to the base's (possibly default) width
        resolved["model.width"] = max(1, base.model.resolved_width // 2)
    try:
        recipe = base.updated(resolved)
    except InputError as e:
        raise e.within(f"arm {name!r}")
    return Arm(name, description, changes, recipe, versus)


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
    allowed = {"name", "seeds", "arms", "arm", "base", "base_recipe", "sweep"}
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
    if "sweep" in d:  # [sweep] "model.width" = [8, 16, 32]: one arm per value
        out["sweeps"] = _flatten(d["sweep"], "sweep")
        sweep_arms(out["sweeps"])  # a bad sweep is named with the study file
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
