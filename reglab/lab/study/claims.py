"""The course's claims, checked on a study's stored trials.

A claim is what the course says, in its words (``says``), and a rule stated before anything
runs (``rule``): a measurement computed from the finished trials (never a stored figure, so that
``reglab report DIR`` recomputes it) and how it decides between three verdicts:

- **holds**: the data show what the course says, by the rule;
- **does not hold on this data**: the data show the opposite, or a stated threshold is missed by
  every seed: a finding about this setting, not a failure of the study;
- **inconclusive**: too few seeds, or too much spread between them, to tell; with how many seeds
  the observed effect and spread would decide it where that can be computed.

The rules, all at ``ALPHA = 0.05``:

- ``paired``: an arm against its reference seed by seed (the study's rule: paired two-sided
  t-test on the per-seed differences), Holm-corrected with the claims of the same ``family``;
  holds when the corrected p < ALPHA and the difference has the claimed sign, does not hold when
  the corrected p < ALPHA and it has the other sign;
- ``trend``: Spearman's rank correlation ρ between a quantity (parameter count, training-set size)
  and a metric over every trial of the arms involved; holds when p < ALPHA with the claimed sign
  of ρ, does not hold when p < ALPHA with the other sign;
- ``every_seed``: a threshold each seed's value must pass; holds when every seed passes, does not
  hold when none does, inconclusive when the seeds disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reglab.lab.study.stats import ALPHA, Paired, by_arm, holm, paired, seeds_needed

HOLDS = "holds"
FAILS = "does not hold on this data"
INCONCLUSIVE = "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)


@dataclass(frozen=True)
class Finding:
    """What the data say of one claim: the verdict, the measurement in words with its numbers,
    the numbers themselves (for ``claims.json``), and what would decide an inconclusive one."""

    verdict: str
    measurement: str
    numbers: dict[str, Any]
    decide: str = ""


@dataclass(frozen=True)
class Claim:
    id: str  # short and stable: claims.json's key
    says: str  # the course's words
    rule: str  # how the measurement decides, stated before the study runs
    measure: Callable[[Evidence], Finding]
    depends: str = ""  # when the claim holds only in some settings (L2 = weight decay: SGD only)

    def check(self, evidence: Evidence) -> dict[str, Any]:
        """The claim and its finding as one row of the report's table and of claims.json."""
        finding = self.measure(evidence)
        return {"id": self.id, "claim": self.says, "rule": self.rule, "depends": self.depends, **asdict(finding)}


class Evidence:
    """A study's finished trials, as the claims read them: ``rows`` (one per trial, as the
    report collects them), grouped by arm; ``out`` is the study's folder (its runs' files)."""

    def __init__(self, plan: Any, rows: Sequence[dict[str, Any]], out: Path | None = None) -> None:
        self.plan, self.rows, self.out = plan, list(rows), out
        self.groups = by_arm(rows)

    def values(self, arm: str, name: str) -> dict[int, float]:
        """seed -> the metric ``name`` of the arm's finished trials."""
        return {r["seed"]: metric(r, name) for r in self.groups.get(arm, [])}

    def lacking(self, *arms: str) -> str | None:
        """The first of ``arms`` with no finished trial, or None."""
        return next((a for a in arms if not self.groups.get(a)), None)


def metric(row: dict[str, Any], name: str) -> float:
    """One number of a trial: a summary value (``test_loss``, ``test_confidence``, ...), a
    diagnosis value (``gap`` = the final generalization gap, ``best_valid_loss``,
    ``final_valid_loss``), ``params`` (parameter count), ``train_samples``, ``test_rmse`` (the
    square root of ``test_mse``), ``first_rms`` (root mean square of the first layer's weights)
    ``noise_ratio`` (mean column norm of the first layer on noise inputs / on the others),
    ``batch_size`` (the recipe's), ``epoch_seconds`` (training seconds per epoch),
    ``first_grad_ratio`` (log10 first/last layer gradient norm, first epoch) or
    ``mean_train_loss`` (mean training loss over the epochs)."""
    s = row.get("summary", row)
    d = row["diagnosis"]
    if name == "gap":
        value = d["gap_at_end"]
    elif name in ("best_valid_loss", "final_valid_loss"):
        value = d[name]
    elif name == "params":
        value = s.get("num_parameters")
    elif name == "test_rmse":
        value = None if s.get("test_mse") is None else math.sqrt(s["test_mse"])
    elif name == "first_rms":
        value = row["weights"]["rms"]
    elif name == "noise_ratio":
        value = noise_ratio(row)
    elif name == "first_grad_ratio":
        value = first_grad_ratio(row)
    elif name == "mean_train_loss":  # the area under the training curve: how fast it trains
        losses = [r["train_loss"] for r in row["history"] if r["train_loss"] is not None]
        value = float(np.mean(losses)) if losses else None
    elif name == "batch_size":
        value = row["recipe"]["data"]["batch_size"]
    elif name == "epoch_seconds":  # mean seconds of training per epoch
        value = s["train_seconds"] / s["stopped_epoch"] if s.get("stopped_epoch") else None
    else:
        value = row[name] if name in row else s.get(name)
    return math.nan if value is None else float(value)


def first_grad_ratio(row: dict[str, Any], epoch: int = 0) -> float:
    """log10 of the first layer's gradient norm over the last layer's (``grad_norm_1`` /
    ``grad_norm_L``) in the ``epoch``-th record (0: the first epoch): −2 is two orders smaller."""
    if not row["history"]:
        return math.nan
    record = row["history"][epoch]
    layers = sorted(int(k.rsplit("_", 1)[1]) for k in record if k.startswith("grad_norm_") and k[10:].isdigit())
    if not layers or not record[f"grad_norm_{layers[-1]}"] or not record["grad_norm_1"]:
        return math.nan
    return math.log10(record["grad_norm_1"] / record[f"grad_norm_{layers[-1]}"])


def noise_ratio(row: dict[str, Any]) -> float:
    """Mean first-layer column norm over the appended noise inputs / over the real inputs
    (``data.noise_features`` inputs, the last of each sample's flattened inputs)."""
    n = row["recipe"]["data"]["noise_features"]
    columns = np.asarray(row["weights"].get("columns") or [], float)
    if not n or len(columns) <= n:
        return math.nan
    signal = columns[:-n].mean()
    return float(columns[-n:].mean() / signal) if signal > 0 else math.nan


# -- rules -----------------------------------------------------------------------------------------
def _effect_words(effect: Paired, p: float, unit: str = "") -> str:
    low, high = effect.low, effect.high
    interval = "" if math.isnan(low) else f" [{low:+.3g}, {high:+.3g}]"
    return f"mean difference {effect.diff:+.3g}{unit}{interval}, p = {_p(p)} over {effect.n} seeds"


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.2g}"


def _mean_sd(values: Sequence[float]) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3g} ± {v.std(ddof=1):.2g}" if len(v) > 1 else f"{v.mean():.3g}"


def paired_finding(
    evidence: Evidence,
    arm: str,
    versus: str,
    name: str,
    lower: bool = True,
    family: Sequence[tuple[str, str]] = (),
    label: str | None = None,
) -> Finding:
    """``arm``'s metric ``name`` against ``versus``'s, seed by seed, claimed lower (``lower``) or
    higher; Holm-corrected together with the other ``(arm, versus)`` pairs of ``family``."""
    missing = evidence.lacking(arm, versus)
    if missing:
        return Finding(INCONCLUSIVE, f"no finished trial of {missing}", {}, "run the study")
    pairs = {p: (evidence.values(p[0], name), evidence.values(p[1], name)) for p in [(arm, versus), *family]}
    a, b = pairs[(arm, versus)]
    numbers = {"metric": name, "arm": arm, "versus": versus, "arm_mean": float(np.mean(list(a.values()))),
               "versus_mean": float(np.mean(list(b.values())))}  # fmt: skip
    return paired_verdict(pairs, (arm, versus), f"{label or name}: ", lower, numbers)


def paired_verdict(
    pairs: dict[Any, tuple[dict[int, float], dict[int, float]]],
    which: Any,
    prefix: str = "",
    lower: bool = True,
    numbers: dict[str, Any] | None = None,
    names: tuple[str, str] | None = None,
) -> Finding:
    """The paired rule on ``pairs[which] = (a, b)`` (seed -> value): ``a − b`` claimed negative
    if ``lower``, Holm-corrected over every pair of ``pairs``; ``names`` of a and b for the words
    (default: ``which``'s two arms), ``numbers`` added to the finding's."""
    a, b = pairs[which]
    names = names or which
    effects = {k: paired(x, y) for k, (x, y) in pairs.items()}
    adjusted = dict(zip(effects, holm([e.p for e in effects.values()])))
    effect, p = effects[which], adjusted[which]
    words = f"{prefix}{names[0]} {_mean_sd(list(a.values()))} vs {names[1]} {_mean_sd(list(b.values()))}; "
    words += _effect_words(effect, p)
    if len(pairs) > 1:
        words += f" (Holm over {len(pairs)})"
    numbers = {**(numbers or {}), "diff": effect.diff, "low": effect.low, "high": effect.high, "p": p,
               "p_raw": effect.p, "seeds": effect.n}  # fmt: skip
    claimed = (effect.diff < 0) == lower
    if not math.isnan(p) and p < ALPHA and effect.diff != 0:
        return Finding(HOLDS if claimed else FAILS, words, numbers)
    needed = seeds_needed(effect, len(pairs))
    if needed and claimed:
        decide = f"about {needed} seeds would decide it, if the effect and spread stay as observed"
    elif needed:
        decide = f"about {needed} seeds would show the opposite, if the effect and spread stay as observed"
    else:
        decide = "no effect to detect at this spread" if effect.n >= 2 else "needs at least 2 seeds"
    return Finding(INCONCLUSIVE, words, {**numbers, "seeds_needed": needed}, decide)


def trend_finding(
    evidence: Evidence, arms: Sequence[str], x: str, y: str, sign: int, x_label: str, y_label: str
) -> Finding:
    """Spearman's ρ between ``x`` and ``y`` over every finished trial of ``arms``, claimed of
    sign ``sign`` (+1: y rises with x)."""
    from scipy import stats

    rows = [r for a in arms for r in evidence.groups.get(a, [])]
    points = [(metric(r, x), metric(r, y)) for r in rows]
    points = [(u, v) for u, v in points if math.isfinite(u) and math.isfinite(v)]
    used = sorted({r["arm"] for r in rows})
    if len(points) < 3 or len({u for u, _ in points}) < 2:
        return Finding(INCONCLUSIVE, f"{len(points)} trials with finite values", {"n": len(points)},
                       "needs trials at 3 or more settings")  # fmt: skip
    result = stats.spearmanr([u for u, _ in points], [v for _, v in points])
    rho, p = float(result.statistic), float(result.pvalue)
    words = (
        f"Spearman ρ({x_label}, {y_label}) = {rho:+.2f}, p = {_p(p)}, over {len(points)} trials ({len(used)} settings)"
    )
    numbers = {"x": x, "y": y, "rho": rho, "p": p, "n": len(points), "settings": len(used)}
    if math.isfinite(p) and p < ALPHA and rho != 0:
        return Finding(HOLDS if (rho > 0) == (sign > 0) else FAILS, words, numbers)
    n = _points_needed(rho)
    per_seed = max(1, len(used))
    decide = (
        f"about {math.ceil(n / per_seed)} seeds would decide it, if ρ stays at {rho:+.2f}"
        if n
        else "no monotone relation to detect"
    )
    return Finding(INCONCLUSIVE, words, {**numbers, "seeds_needed": math.ceil(n / per_seed) if n else None}, decide)


def _points_needed(rho: float, limit: int = 100_000) -> int | None:
    """Points at which a rank correlation ρ would reach p < ALPHA (the t approximation
    ``t = ρ √((n − 2)/(1 − ρ²))`` with n − 2 degrees of freedom)."""
    from scipy import stats

    if not math.isfinite(rho) or rho == 0 or abs(rho) >= 1:
        return None
    n = np.arange(4, limit)
    t = abs(rho) * np.sqrt((n - 2) / (1 - rho**2))
    passes = t > stats.t.ppf(1 - ALPHA / 2, n - 2)
    return int(n[passes.argmax()]) if passes.any() else None


def every_seed(
    evidence: Evidence, arms: Sequence[str], name: str, passes: Callable[[float], bool], threshold: str, label: str
) -> Finding:
    """Each seed of each of ``arms`` must pass ``passes`` (its threshold in words: ``threshold``)."""
    missing = evidence.lacking(*arms)
    if missing:
        return Finding(INCONCLUSIVE, f"no finished trial of {missing}", {}, "run the study")
    values = {a: evidence.values(a, name) for a in arms}
    ok = [passes(v) for a in arms for v in values[a].values()]
    words = "; ".join(
        f"{label} of {a}: "
        + ", ".join(f"{v:.3g}" for v in values[a].values())
        + f" (seeds {', '.join(map(str, values[a]))})"
        for a in arms
    )
    numbers = {"metric": name, "threshold": threshold, "values": {a: list(values[a].values()) for a in arms}}
    if all(ok):
        return Finding(HOLDS, words + f": every seed {threshold}", numbers)
    if not any(ok):
        return Finding(FAILS, words + f": no seed {threshold}", numbers)
    return Finding(
        INCONCLUSIVE, words + f": {sum(ok)} of {len(ok)} {threshold}", numbers, "the seeds disagree: run more"
    )


def run_claims(claims: Sequence[Claim], evidence: Evidence) -> list[dict[str, Any]]:
    """Every claim's row, in order."""
    return [c.check(evidence) for c in claims]
