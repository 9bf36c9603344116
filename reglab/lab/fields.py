"""Recipe fields, declared once.

Each field of a recipe section is declared with ``setting``: its default, a one-line ``why``
(what it is and why the default), its allowed range or choices, and its command-line flag if it
has one. Everything else is derived from these declarations:

- validation: a ``Section`` checks each field's type, range and choices when it is built,
  naming the field (``model.width must be >= 0, got -1``), then its own cross-field rules
  (``Section.check``);
- TOML in and out and the ``--set section.field=VALUE`` keys (``Recipe``);
- the flags of ``reglab train`` and ``reglab study`` and their help, with the default and the
  range (``reglab.lab.cli``), and the list of every field in ``--help``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from reglab._checks import check_bool, check_choice, check_float, check_int, check_str, interval
from reglab.errors import ReglabError, ReglabTypeError


@dataclass(frozen=True)
class Spec:
    """What is declared about one field besides its type and default."""

    why: str  # one line: what the field does and why the default
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Mapping[str, Any] | tuple[str, ...] | None = None  # a Registry, or fixed names
    flag: str | None = None  # the reglab train flag
    study: bool = False  # a reglab study flag too (for the base recipe)
    metavar: str | None = None
    family: str | None = None  # what a study arm changing it touches (data, weights, model, ...)
    needs: tuple[str, ...] = ()  # "labels": class labels; "axes": signals or images
    keys: Mapping[str, Key] | None = None  # a table field's keys that have flags (optimizer.options)
    hint: str = ""  # why the range is what it is, added to a range error


@dataclass(frozen=True)
class Key:
    """A key inside a table field that has a flag of its own (``--momentum``)."""

    flag: str
    type: type
    why: str
    study: bool = False
    family: str | None = None


def setting(default: Any, why: str, **spec: Any) -> Any:
    """Declare a field: ``width: int = setting(0, "hidden units per layer", low=0, flag="--width")``.
    A list or dict default is copied for each instance."""
    meta = {"spec": Spec(why, **spec)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def spec_of(f: dataclasses.Field) -> Spec:
    return f.metadata["spec"]


class Section:
    """Base of the recipe's sections (frozen dataclasses): validates every declared field in
    ``__post_init__``, stores normalized values (an int given for a float becomes a float), then
    calls ``check`` for the rules that involve several fields."""

    section: ClassVar[str] = ""  # the section's table name: "model"
    family: ClassVar[str | None] = None  # the study family of its fields, unless a field says otherwise

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            key = f"{self.section}.{f.name}"
            object.__setattr__(self, f.name, validate(key, getattr(self, f.name), f.type, spec_of(f)))
        self.check()

    def check(self) -> None:
        """Rules across fields (override)."""


def validate(key: str, value: Any, kind: str, spec: Spec) -> Any:
    """``value`` checked against the field's declared type (``kind``, the annotation) and spec."""
    bounds = {"low": spec.low, "high": spec.high}
    if kind == "bool":
        return check_bool(key, value)
    if kind == "int":
        return check_int(key, value, **bounds)
    if kind == "float":
        try:
            return check_float(key, value, **bounds, low_open=spec.low_open, high_open=spec.high_open)
        except ReglabError as e:
            if spec.hint and math.isfinite(value):  # out of range (not NaN/inf, not a wrong type)
                raise ReglabError(f"{e}: {spec.hint}") from None
            raise
    if kind == "str":
        if spec.choices is None:
            return check_str(key, value)
        check = getattr(spec.choices, "check", None)  # a Registry: names, and import paths if open
        return check(key, value) if check else check_choice(key, value, spec.choices)
    if kind.startswith("list["):
        item = kind[5:-1]
        if not isinstance(value, list):
            raise ReglabTypeError(f"{key} must be a list of {item} values, got {value!r}")
        return [validate(f"{key}[{i}]", v, item, Spec(spec.why)) for i, v in enumerate(value)]
    if kind.startswith("dict["):
        if not isinstance(value, dict):
            raise ReglabTypeError(f"{key} must be a table, got {value!r}")
        return dict(value)
    raise TypeError(f"{key}: no validation for fields of type {kind}")  # a declaration bug, not bad input


def describe(spec: Spec, kind: str, default: Any) -> str:
    """The help of a field: why, default, and range or choices."""
    shown = _toml(default)
    allowed = ""
    if spec.choices is not None:
        names = sorted(spec.choices)
        allowed = (
            "; one of " + ", ".join(names) + (" or module:function" if getattr(spec.choices, "open", False) else "")
        )
    elif kind in ("int", "float") and (spec.low is not None or spec.high is not None):
        allowed = "; " + interval(spec.low, spec.high, spec.low_open, spec.high_open)
    return f"{spec.why} (default {shown}{allowed})"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{}" if not value else "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class FieldInfo:
    """One field of the recipe as the command line and the docs see it."""

    key: str  # "model.width"
    kind: str  # "int", "float", "bool", "str", "list[int]", ...
    default: Any
    spec: Spec

    @property
    def help(self) -> str:
        return describe(self.spec, self.kind, self.default)


def fields_of(sections: Mapping[str, type]) -> list[FieldInfo]:
    """Every declared field of the recipe's sections, in declaration order."""
    out = []
    for name, section in sections.items():
        instance = section()
        for f in dataclasses.fields(section):
            out.append(FieldInfo(f"{name}.{f.name}", f.type, getattr(instance, f.name), spec_of(f)))
    return out


def spec_for(sections: Mapping[str, type], key: str) -> Spec | Key | None:
    """The declaration behind a dotted key: a field (``model.dropout``) or a key of a table
    field that has one (``optimizer.options.weight_decay``); ``None`` for other keys."""
    section_name, _, rest = key.partition(".")
    section = sections.get(section_name)
    if section is None:
        return None
    field_name, _, sub = rest.partition(".")
    for f in dataclasses.fields(section):
        if f.name == field_name:
            spec = spec_of(f)
            if not sub:
                return spec
            return (spec.keys or {}).get(sub)
    return None


def family_of(sections: Mapping[str, type], key: str) -> str:
    """The study family of a dotted key: the field's (or key's) own, else its section's."""
    spec = spec_for(sections, key)
    own = getattr(spec, "family", None)
    section = sections.get(key.split(".")[0])
    return own or (section.family if section is not None and section.family else key.split(".")[0])
