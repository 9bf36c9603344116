"""Registries: the names a recipe may use, each owned by the module that implements them.

A ``Registry`` maps names to implementations (model builders, data sets, activations, ...). It
is defined once, beside the code it names (``reglab.models.MODEL_KINDS``,
``reglab.data.DATASETS``, ...); the recipe imports it downward to validate its fields, and the
command line lists its names in the help. Registries marked ``open`` also take

- names registered from Python: ``reglab.register_model("tiny", build)``;
- import paths ``"package.module:function"``, resolved when first used: a recipe can then name
  code that is not registered in the process that runs it (a study's spawned worker, say).

>>> KINDS = Registry("model kind", {"mlp": 1}, open=True)
>>> KINDS.register("tiny", 2)
2
>>> sorted(KINDS), KINDS["tiny"]
(['mlp', 'tiny'], 2)
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from reglab.errors import ReglabError, ReglabTypeError

T = TypeVar("T")


def is_import_path(name: str) -> bool:
    """``"package.module:function"``: a module path, a colon, an attribute path."""
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr) and all(part.isidentifier() for part in (*module.split("."), *attr.split(".")))


class Registry(Mapping[str, T], Generic[T]):
    """Names -> implementations.

    ``what`` names an entry in messages ("model kind"). With ``open=True`` the registry takes
    registrations and import paths; ``wrap`` turns what an import path names (a function) into
    an entry, ``arity`` is how many positional arguments that function must take and
    ``arguments`` says which, in words (for the error when it takes others).
    """

    def __init__(
        self,
        what: str,
        entries: Mapping[str, T] | None = None,
        *,
        open: bool = False,
        wrap: Callable[[Any], T] | None = None,
        arity: int | None = None,
        arguments: str = "",
    ) -> None:
        self.what = what
        self.open = open
        self._entries: dict[str, T] = dict(entries or {})
        self._wrap = wrap
        self._arity = arity
        self.arguments = arguments  # the signature an import path's function must have, in words
        self._resolved: dict[str, T] = {}

    # -- Mapping: the registered names (import paths resolve on lookup but are not listed) --------
    def __getitem__(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        if self.open and isinstance(name, str) and is_import_path(name):
            if name not in self._resolved:
                self._resolved[name] = self._import(name)
            return self._resolved[name]
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"

    # -- registration ------------------------------------------------------------------------
    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add ``entry`` under ``name``; a name already taken needs ``replace=True``."""
        if not self.open:
            raise ReglabError(f"the {self.what} registry is closed: its names are reglab's own ({', '.join(self)})")
        if not isinstance(name, str) or not name or ":" in name or name != name.strip():
            raise ReglabError(f"a {self.what}'s name must be a non-empty string without ':' or spaces, got {name!r}")
        if name in self._entries and not replace:
            raise ReglabError(f"{self.what} {name!r} is already registered; pass replace=True to replace it")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove a registered name (tests that register their own entries clean up with it)."""
        self._entries.pop(name, None)

    # -- validation --------------------------------------------------------------------------
    def check(self, field: str, value: Any) -> str:
        """``value`` if it names an entry (or, for an open registry, an import path that resolves
        to a fitting function), else an error naming ``field`` and listing the known names."""
        if not isinstance(value, str):
            raise ReglabTypeError(f"{field} must be a string, got {value!r} ({type(value).__name__})")
        if value in self._entries:
            return value
        if self.open and is_import_path(value):
            try:
                self[value]
            except ReglabError as e:
                raise e.within(f"{field} = {value!r}") from None
            return value
        extra = " (or an import path 'package.module:function')" if self.open else ""
        raise ReglabError(f"{field} must be one of {', '.join(sorted(self))}{extra}; got {value!r}")

    def _import(self, path: str) -> T:
        module_name, _, attr = path.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as e:
            raise ReglabError(f"cannot import module {module_name!r} ({e})") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ReglabError(f"module {module_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        if not callable(obj):
            raise ReglabError(f"{path} is not a function, it is a {type(obj).__name__}")
        if self._arity is not None:
            try:
                inspect.signature(obj).bind(*range(self._arity))
            except TypeError:
                raise ReglabError(f"{path} must take {self._arity} positional arguments{self._args()}") from None
            except ValueError:  # no signature to read (a builtin): take it on trust
                pass
        return self._wrap(obj) if self._wrap else obj

    def _args(self) -> str:
        return f" ({self.arguments})" if self.arguments else ""
