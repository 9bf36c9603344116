"""What ``reglab tune`` searches: a strength range per technique, and a switch to drop it.

Each technique is an on/off choice (``use.NAME``, so that the search can leave a technique out)
and the ranges of its strengths, with priors that fit them: log-uniform for penalties, decay and
Beta(α, α) parameters (their effect is multiplicative), uniform for probabilities and dropout,
integers for shifts and patience. Every trial samples every range (a technique switched off
ignores its strength), so that every finished trial has the same parameters: what Optuna's
importance, slice and history views expect. The defaults are the techniques that beat the
baseline in the default study (BENCHMARKS.md), around the strengths it uses.

A TOML file overrides ranges and adds any recipe field (always on)::

    techniques = ["shift", "dropout", "l2"]
    [space]
    "model.dropout" = {low = 0.0, high = 0.6}
    "optimizer.lr" = {low = 1e-4, high = 1e-2, log = true}
    "model.norm" = {choices = ["none", "batch"]}

Ranges are checked like recipe fields before anything runs: the field must exist, the range be
non-empty (``low < high``), a log range stay above 0, and the field accept both ends (and each
choice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from reglab._checks import check_str
from reglab.errors import InputError, ReglabError, ReglabTypeError
from reglab.lab.recipe import Recipe, field_spec


@dataclass(frozen=True)
class Dim:
    """One searched recipe key: a numeric range (``log``: log-uniform; ``integer``: whole
    numbers) or a list of ``choices``."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None
    start: Any = None  # where the search starts: the default study's strength (clipped to the range)

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def grid(self) -> list[Any]:
        """Three points of the range (ends and middle, geometric for a log range), or the choices."""
        if self.choices is not None:
            return list(self.choices)
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        points = [self.low, mid, self.high]
        return sorted({round(p) for p in points}) if self.integer else points


@dataclass(frozen=True)
class Technique:
    name: str
    dims: tuple[Dim, ...]
    fixed: dict[str, Any]  # set when the technique is on (early_stopping.enabled, decoupled)


def _t(name: str, *dims: Dim, **fixed: Any) -> Technique:
    return Technique(name, dims, {k.replace("__", "."): v for k, v in fixed.items()})


TECHNIQUES: dict[str, Technique] = {
    t.name: t
    for t in (
        _t("shift", Dim("augment.shift", 1, 8, integer=True, start=4)),
        _t("dropout", Dim("model.dropout", 0.05, 0.6, start=0.3)),
        _t("l1-proximal", Dim("optimizer.options.l1_proximal", 1e-3, 0.3, log=True, start=0.1)),
        _t("l2", Dim("regularization.l2", 1e-4, 1e-1, log=True, start=1e-2)),
        _t(
            "weight-decay",
            Dim("optimizer.options.weight_decay", 1e-2, 1.0, log=True, start=0.5),
            optimizer__options__decoupled=True,
        ),
        _t("cutmix", Dim("mixing.cutmix_alpha", 0.1, 2.0, log=True, start=1.0)),
        _t("mixup", Dim("mixing.mixup_alpha", 0.05, 2.0, log=True, start=0.4)),
        _t(
            "early-stopping",
            Dim("early_stopping.patience", 5, 30, integer=True, start=10),
            early_stopping__enabled=True,
        ),
        _t("input-noise", Dim("regularization.input_noise", 0.05, 0.6, start=0.3)),
        _t("label-smoothing", Dim("mixing.label_smoothing", 0.02, 0.3, start=0.1)),
    )
}
DEFAULT_TECHNIQUES = list(TECHNIQUES)  # those that beat the baseline in the default study


def use_key(technique: str) -> str:
    return f"use.{technique}"


@dataclass(frozen=True)
class Space:
    """The techniques searched (each switchable) and the always-on extra ranges."""

    techniques: tuple[Technique, ...]
    extra: tuple[Dim, ...] = ()

    @property
    def dims(self) -> list[Dim]:
        return [d for t in self.techniques for d in t.dims] + list(self.extra)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The trial's recipe changes: every switch and range sampled, the changes of the
        techniques switched on (and the extra ranges) returned."""
        changes: dict[str, Any] = {}
        for t in self.techniques:
            on = trial.suggest_categorical(use_key(t.name), [True, False])
            values = {d.key: d.suggest(trial) for d in t.dims}
            if on:
                changes.update({**t.fixed, **values})
        changes.update({d.key: d.suggest(trial) for d in self.extra})
        return changes

    def changes_of(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The recipe changes of a finished trial's params (what ``suggest`` returned)."""
        changes: dict[str, Any] = {}
        for t in self.techniques:
            if params.get(use_key(t.name)):
                changes.update({**t.fixed, **{d.key: params[d.key] for d in t.dims}})
        changes.update({d.key: params[d.key] for d in self.extra})
        return changes

    def starting_points(self) -> list[dict[str, Any]]:
        """The first trials of a search: the base recipe (every technique off), then each
        technique alone at its starting strength (the default study's), so that the sampler
        starts from what the study measured instead of random combinations, most of which stack
        several techniques at random strengths (BENCHMARKS.md)."""
        off = {use_key(t.name): False for t in self.techniques}
        starts = {d.key: _start(d) for d in self.dims}
        points = [{**off, **starts}]
        for t in self.techniques:
            points.append({**off, **starts, use_key(t.name): True})
        return points

    def grid(self) -> dict[str, list[Any]]:
        """A grid for ``--sampler grid``: both switch positions, three points of each range."""
        out: dict[str, list[Any]] = {use_key(t.name): [True, False] for t in self.techniques}
        out.update({d.key: d.grid() for d in self.dims})
        return out

    def to_dict(self) -> dict[str, Any]:
        """What identifies the space in the storage (a resumed search must search the same)."""
        return {
            "techniques": [{"name": t.name, "dims": [_dim_dict(d) for d in t.dims], "fixed": t.fixed}
                           for t in self.techniques],
            "extra": [_dim_dict(d) for d in self.extra],
        }  # fmt: skip


def _start(d: Dim) -> Any:
    if d.choices is not None:
        return d.start if d.start in d.choices else d.choices[0]
    value = d.grid()[1] if d.start is None else min(max(d.start, d.low), d.high)
    return round(value) if d.integer else float(value)


def _dim_dict(d: Dim) -> dict[str, Any]:
    out = asdict(d)
    out["choices"] = None if d.choices is None else list(d.choices)
    return out


def make_space(
    base: Recipe,
    techniques: Sequence[str] | None = None,
    ranges: Mapping[str, Any] | None = None,
) -> Space:
    """The techniques (default ``DEFAULT_TECHNIQUES``) with ``ranges`` (recipe key -> ``{low,
    high[, log, int]}`` or ``{choices}``) replacing their defaults or adding always-on ranges;
    every range checked against ``base`` before anything runs."""
    names = DEFAULT_TECHNIQUES if techniques is None else list(techniques)
    if isinstance(techniques, str) or not all(isinstance(n, str) for n in names):
        raise ReglabTypeError(f"techniques must be a list of names, such as ['shift', 'dropout'], got {techniques!r}")
    unknown = [n for n in names if n not in TECHNIQUES]
    if unknown:
        raise ReglabError(f"unknown technique {unknown[0]!r}; known: {', '.join(TECHNIQUES)}")
    if len(set(names)) != len(names):
        raise ReglabError(f"techniques must be distinct, got {names}")
    ranges = dict(ranges or {})
    if not isinstance(ranges, Mapping):
        raise ReglabTypeError(f"space must be a table of recipe keys and ranges, got {ranges!r}")
    parsed = {key: parse_dim(key, value, base) for key, value in ranges.items()}
    chosen = []
    for n in names:
        t = TECHNIQUES[n]
        dims = tuple(replace(parsed.pop(d.key), start=d.start) if d.key in parsed else d for d in t.dims)
        chosen.append(Technique(n, dims, t.fixed))
    space = Space(tuple(chosen), tuple(parsed.values()))
    if not space.dims:
        raise ReglabError("the search space is empty: name at least one technique or give a [space] range")
    for d in space.dims:
        _check_accepted(d, base)
    for t in space.techniques:  # a technique with all its values at once (its fixed keys too)
        _build(base, {**t.fixed, **{d.key: d.grid()[0] for d in t.dims}}, f"technique {t.name!r}")
    return space


def parse_dim(key: str, value: Any, base: Recipe) -> Dim:
    """One ``[space]`` entry, checked: ``{low, high[, log, int]}`` or ``{choices = [...]}``."""
    check_str("space key", key)
    if field_spec(key) is None:
        raise ReglabError(f"space {key!r}: no recipe field is called {key!r} (see reglab tune --help for the fields)")
    if not isinstance(value, Mapping):
        raise ReglabTypeError(f"space {key!r} must be a table such as {{low = 0.0, high = 0.5}}, got {value!r}")
    allowed = {"low", "high", "log", "int", "choices"}
    extra = sorted(set(value) - allowed)
    if extra:
        raise ReglabError(f"space {key!r}: unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")
    if "choices" in value:
        choices = value["choices"]
        if set(value) != {"choices"}:
            raise ReglabError(f"space {key!r}: give either choices or low/high, not both")
        if not isinstance(choices, list) or not choices:
            raise ReglabError(f"space {key!r}: choices must be a non-empty list, got {choices!r}")
        return Dim(key, choices=tuple(choices))
    if "low" not in value or "high" not in value:
        raise ReglabError(f"space {key!r} needs low and high (or choices), got {dict(value)}")
    low, high = value["low"], value["high"]
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ReglabError(f"space {key!r}: {name} must be a finite number, got {v!r}")
    if not low < high:
        raise ReglabError(f"space {key!r}: the range [{low}, {high}] is empty or inverted; low must be < high")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise ReglabTypeError(f"space {key!r}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ReglabError(f"space {key!r}: a log range must stay above 0, got low = {low}")
    integer = value.get("int", _is_int(key, base))
    if not isinstance(integer, bool):
        raise ReglabTypeError(f"space {key!r}: int must be true or false, got {integer!r}")
    if integer and (low != int(low) or high != int(high)):
        raise ReglabError(f"space {key!r}: an integer field's range needs whole ends, got [{low}, {high}]")
    return Dim(key, float(low) if not integer else int(low), float(high) if not integer else int(high), log, integer)


def _is_int(key: str, base: Recipe) -> bool:
    """Whether the field takes whole numbers: its declared type (a table key's) or its default."""
    spec = field_spec(key)
    if getattr(spec, "type", None) is int:
        return True
    value: Any = base.to_dict()
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return isinstance(value, int) and not isinstance(value, bool)


def _check_accepted(d: Dim, base: Recipe) -> None:
    values = list(d.choices) if d.choices is not None else [d.low, d.high]
    for v in values:
        _build(base, {d.key: v}, f"space {d.key!r}: the value {v!r}")


def _build(base: Recipe, changes: dict[str, Any], what: str) -> None:
    try:
        base.updated(changes)
    except InputError as e:
        raise ReglabError(f"{what} is refused: {e}") from None
