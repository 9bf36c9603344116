"""What a built-in study is made of: its arms (``ArmSpec``) and the study (``StudySpec``)."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reglab.lab.recipe import Recipe
from reglab.lab.study.arms import ARMS, COMBINATION, sweep_arms
from reglab.lab.study.claims import Claim, Evidence
from reglab.lab.study.formats import caption_html, img_html
from reglab.lab.study.stats import BASELINE


@dataclass(frozen=True)
class ArmSpec:
    description: str
    changes: dict[str, Any]
    versus: str = BASELINE  # the arm it is compared with; its own name: a reference of its own


@dataclass(frozen=True)
class StudySpec:
    name: str
    shows: str  # one line: what the study shows
    base: dict[str, Any] = field(default_factory=dict)  # recipe changes over Recipe()
    arms: dict[str, ArmSpec] | None = None  # None: the ablation's ARMS (and the combination)
    sweeps: dict[str, list[Any]] = field(default_factory=dict)
    seeds: int = 3
    claims: tuple[Claim, ...] = ()
    figures: Callable[[Evidence], list[str]] | None = None  # the report's own figures (HTML parts)
    full: str = ""  # the flags of the full-length version
    measured: str = ""  # wall time on 2 CPU cores with --workers 2 (benchmarks/study.py)

    @property
    def combination(self) -> bool:
        return self.arms is None

    def base_recipe(self) -> Recipe:
        return Recipe().updated(self.base) if self.base else Recipe()

    def arm_table(self) -> dict[str, tuple[str, dict[str, Any], str]]:
        """name -> (description, changes, versus) of the study's own arms (not its sweeps)."""
        if self.arms is None:
            return {n: (d, dict(c), BASELINE) for n, (d, c) in ARMS.items() if n != COMBINATION}
        return {n: (a.description, dict(a.changes), a.versus) for n, a in self.arms.items()}

    def points(self) -> int:
        """Arms × seeds of the default run (the combination counted)."""
        arms = len(self.arm_table()) + len(sweep_arms(self.sweeps)) + (1 if self.combination else 0)
        return arms * self.seeds


def section(title: str, png: bytes, alt: str, caption: str) -> list[str]:
    """A report section: a heading, the figure, and the sentence that says what to look at."""
    return [f"<h2>{html.escape(title)}</h2>", img_html(png, alt), caption_html(caption)]
