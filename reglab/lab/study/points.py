"""The grid points of a study: which to run now (every arm × seed, then the combination,
derived once from the finished arms and kept with the study), each point's recipe and run
folder, and whether a point has started (a run folder with a checkpoint to resume)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from reglab.lab.recipe import Recipe
from reglab.lab.study.plan import COMBINATION, Plan
from reglab.lab.study.stats import combination_changes
from reglab.lab.study.storage import StudyStore


def grid(plan: Plan, store: StudyStore, done: dict[tuple[str, int], Any]) -> list[tuple[str, int]]:
    """The points to run now: every arm × seed, and the combination's once the others are done
    (unless no arm helped: the combination of nothing would be the baseline again)."""
    points = [(a.name, s) for a in plan.arms for s in plan.seeds]
    if plan.combination and all(p in done for p in points) and combination(plan, store, done)["arms"]:
        points += [(COMBINATION, s) for s in plan.seeds]  # none helped: nothing to combine, nothing to run
    return points


def combination(plan: Plan, store: StudyStore, done: dict[tuple[str, int], Any] | None = None) -> dict[str, Any]:
    """The combination arm, derived from the finished arms once and kept with the study."""
    attrs = store.attrs()
    if "combination" not in attrs:
        done = store.completed() if done is None else done
        rows = [
            {"arm": arm, "seed": seed, **t.user_attrs["summary"]}
            for (arm, seed), t in done.items()
            if arm != COMBINATION
        ]
        store.set_attr("combination", combination_changes(plan, rows))
        attrs = store.attrs()
    return attrs["combination"]


def recipe_for(plan: Plan, store: StudyStore, arm: str, seed: int) -> Recipe:
    if arm == COMBINATION:
        base = plan.base.updated(combination(plan, store)["changes"])
        return base.updated({"training.seed": seed})
    return plan.recipe(arm, seed)


def run_dir(out: Path, arm: str, seed: int, recipe: Recipe) -> Path:
    digest = hashlib.sha256(json.dumps(recipe.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return out / "runs" / f"{arm}-seed{seed}-{digest}"


def started(plan: Plan, store: StudyStore, out: Path, arm: str, seed: int) -> bool:
    """Whether the point has a run folder with a checkpoint (a trial that died part-way): it
    resumes from there, one trial at a time."""
    return (run_dir(out, arm, seed, recipe_for(plan, store, arm, seed)) / "checkpoint.pt").exists()
