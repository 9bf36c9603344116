"""The command line's recipe flags, derived from the recipe's field declarations.

Every field declared with ``flag=`` (and every flagged key of a table field, such as
``optimizer.options.momentum``) becomes an option of ``reglab train`` (``study=True``: of
``reglab study`` too). Its type, choices, help (why, default, range) and metavar come from the
declaration; a flag left unset does not change the recipe. The ``--set`` help lists every field
with its default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reglab._checks import check_choice
from reglab.data import FILE_FORMATS
from reglab.errors import InputError
from reglab.lab.fields import Key, Spec
from reglab.lab.recipe import FIELDS


@dataclass(frozen=True)
class Flag:
    flag: str  # "--width"
    key: str  # "model.width"
    kind: str  # "int", "float", "bool", "str"
    help: str
    study: bool
    metavar: str | None
    choices: Any = None  # a Registry or a tuple of names, checked when parsed


def _dataset(value: str) -> dict[str, Any]:
    """``--dataset NAME`` or ``--dataset FILE.npz|FILE.csv`` (the file's format from its suffix)."""
    suffix = Path(value).suffix.lower()[1:]
    return {"data.name": suffix, "data.path": value} if suffix in FILE_FORMATS else {"data.name": value}


PARSE: dict[str, Callable[[Any], dict[str, Any]]] = {"data.name": _dataset}  # flags that set more than their field


def recipe_flags() -> list[Flag]:
    """Every flag the recipe declares, in declaration order."""
    out = []
    for info in FIELDS:
        spec: Spec = info.spec
        if spec.flag:
            choices = None if info.key in PARSE else spec.choices
            out.append(Flag(spec.flag, info.key, info.kind, info.help, spec.study, spec.metavar, choices))
        for name, key in (spec.keys or {}).items():
            assert isinstance(key, Key)
            kind = key.type.__name__
            out.append(Flag(key.flag, f"{info.key}.{name}", kind, f"{key.why} (default: the optimizer's own)",
                            key.study, None, None))  # fmt: skip
    return out


_METAVARS = {"int": "N", "float": "X", "str": "NAME"}


def _choice(key: str, choices: Any) -> Callable[[str], str]:
    """An argparse type that checks a name against the field's choices, in the field's words."""

    def parse(value: str) -> str:
        try:
            check = getattr(choices, "check", None)
            return check(key, value) if check else check_choice(key, value, choices)
        except InputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def add_recipe_flags(parser: argparse.ArgumentParser, study: bool = False) -> None:
    """Add the recipe's flags (a study's: those declared ``study=True``) to ``parser``."""
    for f in recipe_flags():
        if study and not f.study:
            continue
        if f.kind == "bool":
            parser.add_argument(f.flag, dest=f.key, action="store_const", const=True, default=None, help=f.help)
            continue
        kind = {"int": int, "float": float}.get(f.kind, str)
        if f.choices is not None:
            kind = _choice(f.key, f.choices)
        metavar = f.metavar or _METAVARS.get(f.kind, "VALUE")
        parser.add_argument(f.flag, dest=f.key, type=kind, default=None, metavar=metavar, help=f.help)


def flag_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe changes the flags given on the command line ask for."""
    changes: dict[str, Any] = {}
    for f in recipe_flags():
        value = getattr(args, f.key, None)
        if value is None:
            continue
        changes.update(PARSE[f.key](value) if f.key in PARSE else {f.key: value})
    return changes


def fields_help() -> str:
    """Every recipe field with its default, range and why: the ``--set`` keys."""
    lines = ["recipe fields (--set KEY=VALUE, the value written as in TOML):"]
    for info in FIELDS:
        lines.append(f"  {info.key}: {info.help}")
    return "\n".join(lines)
