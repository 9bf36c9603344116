"""Statistics of a study: per-arm means over seeds, and the rule for "better than baseline".

The design is paired: the runs of one seed share their validation split, their batch order and,
where the architecture is the same, their initial weights, so each arm is compared with the
baseline seed by seed. The rule, for a metric where lower is better:

- the per-seed differences ``d_s = arm_s − baseline_s`` (the seeds both have) are tested with a
  paired two-sided t-test, ``t = mean(d) / (sd(d)/√n)`` with ``n − 1`` degrees of freedom
  (``scipy.stats.ttest_rel``), and the mean difference gets its 95% t interval;
- the p-values of all the arms of a study are corrected together by Holm–Bonferroni (``holm``),
  so that with ``m`` arms the chance of calling any arm "better" when none is stays below
  ``ALPHA = 0.05`` (uncorrected, 12 arms would call something better about 46% of the time);
- *better*: corrected p < ALPHA and a lower mean; *worse*: corrected p < ALPHA and a higher
  mean; otherwise *inconclusive*, with the number of seeds at which the observed mean
  difference and spread would pass the strictest threshold, ``ALPHA / m`` (``seeds_needed``).

The leaderboard applies it to test loss; the combination arm is built from the arms that pass
it on *validation* loss, so that the test set is never used to choose what to combine: the best
helper of each family (data, weights, model, stopping), at most three.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Paired:
    """An arm against the baseline, seed by seed (``d = arm − baseline``)."""

    n: int  # seeds both have
    diff: float  # mean of d
    low: float  # 95% t interval of the mean difference
    high: float
    p: float  # two-sided paired t-test (NaN below 2 seeds or with a non-finite value)
    sd: float  # standard deviation of d (ddof 1)


def paired(values: dict[int, float], baseline: dict[int, float]) -> Paired:
    """The paired t-test of ``values`` against ``baseline`` (both seed -> metric) over the seeds
    they share: ``t = mean(d) / (sd(d)/√n)``, ``n − 1`` degrees of freedom."""
    from scipy import stats

    seeds = sorted(set(values) & set(baseline))
    d = np.array([_float(values[s]) - _float(baseline[s]) for s in seeds], dtype=np.float64)
    n = len(d)
    if n < 2 or not np.isfinite(d).all():
        mean = float(d.mean()) if n else math.nan
        return Paired(n, mean, math.nan, math.nan, math.nan, math.nan)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:  # every seed moved by the same amount: t is undefined, the sign is certain
        return Paired(n, mean, mean, mean, 1.0 if mean == 0 else 0.0, 0.0)
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * sd / math.sqrt(n)
    p = float(stats.ttest_rel([_float(values[s]) for s in seeds], [_float(baseline[s]) for s in seeds]).pvalue)
    return Paired(n, mean, mean - half, mean + half, p, sd)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (Holm 1979): sorted ascending, the i-th of m (from 0)
    becomes ``max over j <= i of min(1, (m − j) p_(j))``; reject where the adjusted p < ALPHA.
    NaN p-values (untestable arms) are left out of m and stay NaN."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for j, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - j) * p))
        out[i] = running
    return out


def seeds_needed(effect: Paired, m: int, limit: int = 1000) -> int | None:
    """Seeds at which the observed mean difference and spread would give a paired p below
    ``ALPHA / m`` (the strictest Holm threshold): the smallest n with
    ``|mean| / (sd/√n) > t_{1 − α/2m, n−1}``; None when no n up to ``limit`` would."""
    from scipy import stats

    if not (math.isfinite(effect.diff) and math.isfinite(effect.sd)) or effect.diff == 0:
        return None
    if effect.sd == 0:
        return 2
    level = ALPHA / max(m, 1)
    n = np.arange(2, limit + 1)
    passes = abs(effect.diff) / (effect.sd / np.sqrt(n)) > stats.t.ppf(1 - level / 2, n - 1)
    return int(n[passes.argmax()]) if passes.any() else None


def verdict(effect: Paired, adjusted_p: float) -> str:
    """better / worse / inconclusive, by the rule above (lower is better)."""
    if math.isnan(adjusted_p) or adjusted_p >= ALPHA:
        return "inconclusive"
    return "better" if effect.diff < 0 else "worse"


def better(values: Sequence[float], baseline: Sequence[float]) -> bool:
    """The rule for one comparison (m = 1): paired over the seeds, in order, lower mean and
    p < ALPHA (never for a diverged run's NaN)."""
    effect = paired(dict(enumerate(values)), dict(enumerate(baseline)))
    return verdict(effect, effect.p) == "better"


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


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


def compare(
    groups: dict[str, list[dict[str, Any]]],
    arms: Sequence[str],
    metric: str,
    versus: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The rule applied to ``metric`` for each of ``arms`` against the baseline (or the arm
    ``versus[arm]``), corrected together: per arm its ``Paired`` effect, the raw and the
    Holm-adjusted p, the verdict and, when inconclusive, the seeds the observed effect would need."""
    versus = versus or {}

    def values(arm: str) -> dict[int, Any]:
        return {r["seed"]: r[metric] for r in groups.get(arm, [])}

    effects = {a: paired(values(a), values(versus.get(a, BASELINE))) for a in arms}
    adjusted = dict(zip(effects, holm([e.p for e in effects.values()])))
    out = {}
    for a, effect in effects.items():
        said = verdict(effect, adjusted[a])
        needed = seeds_needed(effect, len(effects)) if said == "inconclusive" else None
        out[a] = {"effect": effect, "p_raw": effect.p, "p_value": adjusted[a], "verdict": said, "seeds_needed": needed}
    return out


def verdicts_on(
    rows: Sequence[dict[str, Any]], metric: str, higher_is_better: bool = False, versus: dict[str, str] | None = None
) -> dict[str, str]:
    """The rule above applied to another metric (``test_acc``: higher is better): ``better``,
    ``worse`` or ``inconclusive`` for each arm with a finite value in every seed (against the
    baseline, or the arm ``versus[arm]``)."""
    groups = by_arm(rows)
    refs = {a: (versus or {}).get(a, BASELINE) for a in groups}
    sign = -1.0 if higher_is_better else 1.0
    signed = {a: [{"seed": r["seed"], "m": sign * r[metric]} for r in rs if _finite(r.get(metric))]
              for a, rs in groups.items()}  # fmt: skip
    arms = [
        a for a in signed
        if a != BASELINE and refs[a] != a and refs[a] in groups and signed[a] and len(signed[a]) == len(groups[a])
    ]  # fmt: skip
    return {a: v["verdict"] for a, v in compare(signed, arms, "m", refs).items()}


def leaderboard(
    rows: Sequence[dict[str, Any]], arm_order: Sequence[str], versus: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One entry per arm, sorted by mean test loss: means ± std over seeds, the paired difference
    from the baseline (or from the arm ``versus[arm]``; an arm compared with itself is a baseline
    of its own) with its 95% interval, the Holm-adjusted p-value and the verdict."""
    groups = by_arm(rows)
    versus = dict(versus or {})
    refs = {a: versus.get(a, BASELINE) for a in arm_order}
    arms = [a for a in arm_order if a in groups]
    reference = {a for a in arms if refs[a] in (a,) or a == BASELINE}
    testable = [
        a for a in arms
        if a not in reference and groups.get(refs[a]) and all(_finite(r["test_loss"]) for r in groups[a])
    ]  # fmt: skip
    rule = compare(groups, testable, "test_loss", refs)
    board = []
    for arm in arms:
        rs = groups[arm]
        entry: dict[str, Any] = {"arm": arm, "seeds": len(rs)}
        for metric in ("test_acc", "test_loss", "valid_loss"):
            entry[metric], entry[f"{metric}_std"] = _mean_std([r[metric] for r in rs])
        entry["best_epoch"] = _mean([r["best_epoch"] for r in rs])  # NaN when a diverged seed had none
        entry["stopped_epoch"] = _mean([r["stopped_epoch"] for r in rs])
        entry["gap"] = _mean_std([r["diagnosis"]["gap_at_end"] for r in rs])[0]
        entry["zero_frac"] = _mean_std([r.get("zero_frac") or 0.0 for r in rs])[0]
        entry.update(diff=math.nan, diff_low=math.nan, diff_high=math.nan, p_raw=math.nan, seeds_needed=None)
        entry["versus"] = None if arm in reference else refs[arm]
        base = [r["test_loss"] for r in groups.get(refs[arm], [])] if arm not in reference else []
        if arm in reference or not base:
            entry["p_value"], entry["verdict"] = math.nan, "baseline" if arm in reference else "no baseline"
        elif arm not in rule:  # some seed ended with a NaN/Inf loss
            entry["p_value"], entry["verdict"] = math.nan, "diverged"
        else:
            r = rule[arm]
            e = r["effect"]
            entry.update(diff=e.diff, diff_low=e.low, diff_high=e.high, p_raw=r["p_raw"], p_value=r["p_value"],
                         verdict=r["verdict"], seeds_needed=r["seeds_needed"])  # fmt: skip
        entry["change"] = entry["test_loss"] / _mean(base) - 1 if base else math.nan
        if arm in reference:
            entry["change"] = 0.0 if rs else math.nan
        board.append(entry)
    return sorted(board, key=lambda e: (math.isnan(e["test_loss"]), e["test_loss"]))


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


COMBINE_MAX = 3  # arms in the combination: stacking every helper over-regularizes (BENCHMARKS.md)


def family(arm: Any) -> str:
    """The family of an arm: what part of training its first changed key touches, as declared
    with the recipe's fields: data (augmentation, input noise, mixing), weights (penalties,
    decay), model (dropout, normalization, width), stopping or schedule."""
    key = next(iter(arm.changes), "")
    return family_of(SECTIONS, key) if key else ""


def combination_changes(plan: Any, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The combination arm: among the arms that beat the baseline on validation loss (the rule
    above, paired and Holm-corrected over the single arms), the best of each family, best first,
    at most ``COMBINE_MAX``; their recipe changes merged. An arm whose changes set a key already
    set to another value is left out."""
    groups = by_arm(rows)
    singles = [a.name for a in plan.arms if a.name != BASELINE and a.name in groups]
    singles = [a for a in singles if all(_finite(r["valid_loss"]) for r in groups[a])]
    rule = compare(groups, singles, "valid_loss")
    helpers = [a for a in singles if rule[a]["verdict"] == "better"]
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
