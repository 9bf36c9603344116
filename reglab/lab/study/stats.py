"""Statistics of a study: per-arm means over seeds, and the rule for "better than baseline".

The rule: an arm beats the baseline on a metric (lower is better) when its mean is lower and
Welch's two-sided t-test (unequal variances, ``scipy.stats.ttest_ind(equal_var=False)``) over
the seeds rejects equal means at ``ALPHA = 0.05``. The leaderboard applies it to test loss;
the combination arm is built from the arms that pass it on *validation* loss, so that the test
set is never used to choose what to combine: the best helper of each family (data, weights,
model, stopping), at most three.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from reglab.lab.fields import family_of
from reglab.lab.recipe import SECTIONS

ALPHA = 0.05
BASELINE = "baseline"


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test; NaN with fewer than two values on a side."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan
    if a.var() == 0 and b.var() == 0:  # no spread: the t statistic is undefined
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def better(values: Sequence[float], baseline: Sequence[float]) -> bool:
    """The rule above: lower mean and Welch's p < ALPHA (never for a diverged run's NaN)."""
    p = welch_p(values, baseline)
    return bool(_mean(values) < _mean(baseline) and p < ALPHA)


def _mean(values: Sequence[float | None]) -> float:
    """Mean with ``None`` (a non-finite value stored as JSON null) counting as NaN."""
    return float(np.mean(np.asarray(values, float)))


def _mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    v = np.asarray(values, float)  # None (NaN/Inf stored as JSON null) becomes NaN
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def by_arm(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        out.setdefault(r["arm"], []).append(r)
    return out


def leaderboard(rows: Sequence[dict[str, Any]], arm_order: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per arm, sorted by mean test loss: means ± std over seeds and the verdict."""
    groups = by_arm(rows)
    base = [r["test_loss"] for r in groups.get(BASELINE, [])]
    board = []
    for arm in (a for a in arm_order if a in groups):
        rs = groups[arm]
        entry: dict[str, Any] = {"arm": arm, "seeds": len(rs)}
        for metric in ("test_acc", "test_loss", "valid_loss"):
            entry[metric], entry[f"{metric}_std"] = _mean_std([r[metric] for r in rs])
        entry["best_epoch"] = _mean([r["best_epoch"] for r in rs])  # NaN when a diverged seed had none
        entry["stopped_epoch"] = _mean([r["stopped_epoch"] for r in rs])
        entry["gap"] = _mean_std([r["diagnosis"]["gap_at_end"] for r in rs])[0]
        entry["zero_frac"] = _mean_std([r.get("zero_frac") or 0.0 for r in rs])[0]
        if arm == BASELINE or not base:
            entry["p_value"], entry["verdict"] = math.nan, "baseline" if arm == BASELINE else "no baseline"
        elif not math.isfinite(entry["test_loss"]):  # some seed ended with a NaN/Inf loss
            entry["p_value"], entry["verdict"] = math.nan, "diverged"
        else:
            losses = [r["test_loss"] for r in rs]
            entry["p_value"] = welch_p(losses, base)
            entry["verdict"] = (
                "better" if better(losses, base) else ("worse" if better(base, losses) else "no significant difference")
            )
        entry["change"] = entry["test_loss"] / _mean(base) - 1 if base else math.nan
        board.append(entry)
    return sorted(board, key=lambda e: (math.isnan(e["test_loss"]), e["test_loss"]))


COMBINE_MAX = 3  # arms in the combination: stacking every helper over-regularizes (BENCHMARKS.md)


def family(arm: Any) -> str:
    """The family of an arm: what part of training its first changed key touches, as declared
    with the recipe's fields: data (augmentation, input noise, mixing), weights (penalties,
    decay), model (dropout, normalization, width), stopping or schedule."""
    key = next(iter(arm.changes), "")
    return family_of(SECTIONS, key) if key else ""


def combination_changes(plan: Any, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The combination arm: among the arms that beat the baseline on validation loss (the rule
    above), the best of each family, best first, at most ``COMBINE_MAX``; their recipe changes
    merged. An arm whose changes set a key already set to another value is left out."""
    groups = by_arm(rows)
    base = [r["valid_loss"] for r in groups[BASELINE]]
    helpers = [
        a.name
        for a in plan.arms
        if a.name != BASELINE and a.name in groups and better([r["valid_loss"] for r in groups[a.name]], base)
    ]
    helpers.sort(key=lambda a: _mean([r["valid_loss"] for r in groups[a]]))
    changes: dict[str, Any] = {}
    used: list[str] = []
    skipped: list[str] = []
    families: set[str] = set()
    for name in helpers:
        arm = plan.arm(name)
        mine = _resolved_changes(arm)
        if (
            len(used) == COMBINE_MAX
            or family(arm) in families
            or any(k in changes and changes[k] != v for k, v in mine.items())
        ):
            skipped.append(name)
            continue
        changes.update(mine)
        used.append(name)
        families.add(family(arm))
    return {"arms": used, "skipped": skipped, "changes": changes}


def _resolved_changes(arm: Any) -> dict[str, Any]:
    """The arm's changes with relative values (``"half"``) replaced by what its recipe holds."""
    d = arm.recipe.to_dict()
    out = {}
    for key in arm.changes:
        value: Any = d
        for part in key.split("."):
            value = value[part]
        out[key] = value
    return out
