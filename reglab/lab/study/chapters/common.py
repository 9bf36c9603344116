"""Measurements the optimization chapters share: an arm's steps, its best learning rate on a
grid, per-seed verdicts over several arms, and mean curves as ``Panel`` lines."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reglab.lab.study.claims import FAILS, HOLDS, INCONCLUSIVE, Evidence, Finding, metric


def steps_per_epoch(row: dict[str, Any]) -> int:
    """Optimizer steps in one epoch of the trial ``row``: ⌈training samples / batch size⌉."""
    return math.ceil(row["summary"]["train_samples"] / row["recipe"]["data"]["batch_size"])


def best_arm(evidence: Evidence, arms: Sequence[str], key: str = "best_valid_loss") -> str | None:
    """Of ``arms`` (one optimizer at several learning rates), the finished one with the lowest
    mean ``key`` over its seeds: the learning rate chosen on validation loss."""
    scored = []
    for arm in arms:
        values = [metric(r, key) for r in evidence.groups.get(arm, [])]
        values = [v for v in values if math.isfinite(v)]
        if values:
            scored.append((float(np.mean(values)), arm))
    return min(scored)[1] if scored else None


def seedwise(
    evidence: Evidence, arms: Sequence[str], passes: Callable[[dict[str, dict[str, Any]]], tuple[bool, str]]
) -> Finding:
    """``passes({arm: row of this seed})`` -> (passed, words) for each seed every one of
    ``arms`` finished: holds if every seed passes, does not hold if none does, inconclusive if
    they disagree (or none finished)."""
    missing = evidence.lacking(*arms)
    if missing:
        return Finding(INCONCLUSIVE, f"no finished trial of {missing}", {}, "run the study")
    rows = {(r["arm"], r["seed"]): r for r in evidence.rows}
    seeds = sorted(set.intersection(*({r["seed"] for r in evidence.groups[a]} for a in arms)))
    said = {seed: passes({a: rows[(a, seed)] for a in arms}) for seed in seeds}
    words = "; ".join(f"seed {s}: {w}" for s, (_, w) in said.items())
    ok = [p for p, _ in said.values()]
    numbers = {"arms": list(arms), "seeds": seeds, "passed": ok}
    if ok and all(ok):
        return Finding(HOLDS, words, numbers)
    if ok and not any(ok):
        return Finding(FAILS, words, numbers)
    return Finding(INCONCLUSIVE, words or "no seed finished every arm", numbers, "the seeds disagree: run more")


def mean_line(rows: Sequence[dict[str, Any]], key: str, x: str = "epoch") -> tuple[list[float], list[float]]:
    """The mean of ``key`` per epoch over ``rows``' histories (the epochs every run reached),
    against ``x``: "epoch", "step" (epochs × steps per epoch) or "time" (cumulative seconds)."""
    histories = [r["history"] for r in rows if r["history"]]
    if not histories:
        return [], []
    n = min(len(h) for h in histories)
    ys = [float(np.nanmean([_number(h[e].get(key)) for h in histories])) for e in range(n)]
    if x == "step":
        xs = [float((e + 1) * steps_per_epoch(rows[0])) for e in range(n)]
    elif x == "time":
        xs = [float(np.mean([sum(r["time"] for r in h[: e + 1]) for h in histories])) for e in range(n)]
    else:
        xs = [float(e + 1) for e in range(n)]
    return xs, ys


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def points(evidence: Evidence, arms: Sequence[str], x: Callable[[dict[str, Any]], float], key: str):
    """One point per arm, (x, mean, std) of ``key`` over its seeds, sorted by x."""
    out = []
    for arm in arms:
        rs = evidence.groups.get(arm, [])
        if rs:
            ys = np.array([metric(r, key) for r in rs], float)
            out.append((x(rs[0]), float(np.nanmean(ys)), float(np.nanstd(ys))))
    out.sort()
    return [p[0] for p in out], [p[1] for p in out], [p[2] for p in out]


def paired_values(
    pairs: dict[str, tuple[dict[int, float], dict[int, float]]], which: str, names: tuple[str, str], lower: bool
) -> Finding:
    """Like ``paired_finding`` for values that are not one metric of two arms (two metrics of one
    arm, or per-seed differences): ``pairs[name] = (a, b)``, seed -> value; the pair ``which``
    is tested (``a − b`` claimed negative if ``lower``), Holm-corrected over all the pairs."""
    from reglab.lab.study.claims import paired_verdict

    a, b = pairs[which]
    if not a or not b:
        return Finding(INCONCLUSIVE, "no finished trials to compare", {}, "run the study")
    return paired_verdict(pairs, which, lower=lower, numbers={"a": names[0], "b": names[1]}, names=names)
