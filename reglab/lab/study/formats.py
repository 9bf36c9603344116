"""How the study's numbers are written, in the report and in the terminal alike."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

from reglab.lab.study.stats import ALPHA


def fmt(x: Any, spec: str = ".3f") -> str:
    """``x`` formatted with ``spec``; "–" for a missing value; a loss that exploded (10,000 or
    more) in 3 significant digits (``3.68e+16``), a change of 1,000% or more as a factor."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if spec.endswith("%") and abs(x) >= 10:
        return f"{1 + x:.3g}× base"
    if spec.endswith("f") and math.isfinite(x) and abs(x) >= 1e4:
        return format(x, "+.3g" if spec.startswith("+") else ".3g")
    return format(x, spec)


def pm(mean: float, std: float, sep: str = " ± ") -> str:
    return f"{fmt(mean)}{sep}{fmt(std)}"


def p_text(p: float, alpha: float = ALPHA) -> str:
    """A p-value with the digits that decide the rule ``p < alpha``: two significant digits,
    more where rounding would cross ``alpha`` (0.0495 is "0.0495", not "0.05"), and "< 0.001"
    below a thousandth."""
    if p is None or math.isnan(p):
        return "–"
    if p < 0.001:
        return "< 0.001"
    for digits in range(2, 8):
        text = f"{p:.{digits}g}"
        if (float(text) < alpha) == (p < alpha):
            return text
    return f"{p:.8g}"


def has_accuracy(board: Sequence[dict[str, Any]]) -> bool:
    """Whether the study measured accuracy (classification); a regression study has losses only."""
    return any(not math.isnan(e["test_acc"]) for e in board)


def missing_words(missing: Sequence[tuple[str, int]]) -> str:
    """``'l2 (seeds 0, 1), dropout (seed 1)'``: the trials a study has still to run."""
    seeds: dict[str, list[int]] = {}
    for arm, seed in missing:
        seeds.setdefault(arm, []).append(seed)
    return ", ".join(f"{arm} (seed{'s' if len(ss) > 1 else ''} {', '.join(map(str, ss))})" for arm, ss in seeds.items())


def img_html(png: bytes, alt: str) -> str:
    """A figure embedded in the report: the PNG as a data URL (the report needs no other file)."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def caption_html(text: str) -> str:
    """The sentence under a figure that says what to look at (HTML: the caller escapes)."""
    return f"<p class=caption>{text}</p>"
