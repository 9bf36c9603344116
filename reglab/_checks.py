"""Argument checks shared by recipes, optimizers and techniques.

Every check names the field, shows the value it got and says what is allowed, so that an
error raised before training tells the user exactly what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reglab.errors import ReglabError, ReglabTypeError, WriteError


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[low, high]``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReglabTypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ReglabError(f"{name} must be {interval(low, high, False, False)}, got {value!r}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float in the interval, else raise.

    Ints are accepted (``lr=1`` is fine); bools, strings and NaN/inf are not.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReglabTypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ReglabError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ReglabError(f"{name} must be {interval(low, high, low_open, high_open)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ReglabTypeError(f"{name} must be true or false, got {value!r} ({type(value).__name__})")
    return value


def check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ReglabTypeError(f"{name} must be a string, got {value!r} ({type(value).__name__})")
    return value


def check_folder(name: str, value: Any) -> Path:
    """``value`` as a Path that is, or can be made, a folder we can write: no part of it is an
    existing file, and its nearest existing folder is writable (checked before any work)."""
    import os

    path = Path(value)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise ReglabError(f"{name} {path}: {part} is a file, not a folder")
            if not os.access(part, os.W_OK | os.X_OK):  # read-only file systems too, even for root
                raise WriteError(f"{name} {path}: the folder {part} is not writable; choose another {name}")
            break
    return path


def check_generator(generator: Any) -> Any:
    """Return ``generator`` if it is a ``torch.Generator`` (the explicit source of randomness
    every augmentation and noise function takes), else raise ``TypeError``."""
    import torch

    if not isinstance(generator, torch.Generator):
        raise ReglabTypeError(f"generator must be a torch.Generator, got {generator!r} ({type(generator).__name__})")
    return generator


def check_tensor(who: str, name: str, x: Any) -> None:
    """Raise ``TypeError`` unless ``x`` is a torch tensor (``who`` works on whole batches)."""
    import torch

    if not isinstance(x, torch.Tensor):
        hint = "; torch.as_tensor(x) converts a NumPy array" if type(x).__module__ == "numpy" else ""
        raise ReglabTypeError(f"{who}: {name} must be a torch.Tensor, got {type(x).__name__}{hint}")


def check_module(who: str, model: Any) -> None:
    """Raise ``TypeError`` unless ``model`` is a ``torch.nn.Module``: ``who`` finds the
    parameters it acts on by layer type and name, which a bare parameter list does not have."""
    import torch

    if not isinstance(model, torch.nn.Module):
        hint = (
            " (it finds weights by layer and name: pass the model, not model.parameters())"
            if not isinstance(model, torch.Tensor)
            else ""
        )
        raise ReglabTypeError(f"{who} takes the model (a torch.nn.Module), got {type(model).__name__}{hint}")


def check_floating(name: str, x: Any) -> None:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor: ``name`` (an augmentation
    that interpolates, blends or adds noise) makes values an integer dtype cannot hold."""
    check_tensor(name, "x", x)
    if not x.is_floating_point():
        raise ReglabTypeError(f"{name} needs floating-point inputs, got {x.dtype}; convert first, e.g. x.float() / 255")


def check_schedule(schedule: Any) -> None:
    """``schedule`` must be a function of the step (called with t = 1, 2, ...)."""
    if not callable(schedule):
        raise ReglabTypeError(f"schedule must be a function of the step, got {schedule!r}")


def check_lr(lr: Any) -> None:
    """``lr`` is a number or, as torch.optim allows, a one-element tensor (which a scheduler
    then changes in place); either way finite and >= 0."""
    import torch

    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1 or lr.is_complex():
            raise ReglabError(f"lr as a tensor must hold one real number, got shape {tuple(lr.shape)} ({lr.dtype})")
        lr = lr.item()
    check_float("lr", lr, low=0)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists the known names."""
    choices = sorted(choices)
    check_str(name, value)
    if value not in choices:
        raise ReglabError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def interval(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "a number"
