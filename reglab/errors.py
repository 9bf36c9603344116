"""One exception family for bad input.

Everything reglab raises because of what it was given (a value out of range, a wrong type, a
missing or malformed file, an output folder already in use, a storage that cannot be reached)
is an ``InputError``. The ``reglab`` command prints such an error as one line and exits with
status 2; any other exception is an internal error: its traceback is kept and the command exits
with status 1, asking for a report.

The concrete classes also subclass the built-in exception a Python user would catch
(``ReglabError`` is a ``ValueError``, ``ReglabTypeError`` a ``TypeError``, ``MissingFileError``
a ``FileNotFoundError``), so ``except ValueError`` keeps working.

Context (the arm, the study file) is added to an input error with ``within``, which prefixes
its one line (``arm 'mixup': mixing.mixup_alpha ...``); context for any other exception is added
with ``add_note``, which keeps its type and traceback.

>>> try:
...     raise ReglabError("model.width must be >= 0, got -1")
... except InputError as e:
...     str(e.within("arm 'half-width'"))
"arm 'half-width': model.width must be >= 0, got -1"
"""

from __future__ import annotations

from typing import Any


class InputError(Exception):
    """Base of every bad-input error: reported in one line, never as a traceback."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.context: list[str] = []  # outermost first: ["study file s.toml", "arm 'x'"]
        self.file: str | None = None  # the file the message already names, when it is about one

    def within(self, where: str) -> InputError:
        """Add ``where`` in front of the message (the outermost context comes first); returns
        the error itself, to be re-raised with its traceback: ``raise e.within("arm 'x'")``."""
        self.context.insert(0, where)
        return self

    def __str__(self) -> str:
        return ": ".join([*self.context, super().__str__()])


class ReglabError(InputError, ValueError):
    """A bad value: out of range, NaN, an unknown name, data that would spoil training."""


class ReglabTypeError(InputError, TypeError):
    """A value of the wrong type (a string for a number, a list for a table, ...)."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder named by the user does not exist."""

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would show (errno, strerror)
        return ": ".join([*self.context, str(self.args[0]) if self.args else ""])


class WriteError(InputError, OSError):
    """A file could not be written: the disk is full, the file system read-only, or the folder
    not writable. What was written before is intact (every file is written atomically)."""

    def __str__(self) -> str:  # OSError's own __str__ would show (errno, strerror)
        return ": ".join([*self.context, str(self.args[0]) if self.args else ""])


class FolderBusyError(InputError, RuntimeError):
    """Another process holds the folder's lock (a run training into it, a report being written)."""


class UsageError(InputError):
    """A mistake in what was typed on the command line."""


def note(e: BaseException, text: str) -> None:
    """Add context to an exception: ``within`` for an input error (one line), a PEP 678 note
    for any other (Python 3.11+; older Pythons keep the exception as it is)."""
    if isinstance(e, InputError):
        e.within(text)
    elif hasattr(e, "add_note"):
        e.add_note(text)
