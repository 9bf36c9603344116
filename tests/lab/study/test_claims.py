"""The claims' verdict logic, on made-up trial results: each rule gives each of its three outcomes.

The numbers are built so that the outcome is known in advance: a clear effect in the claimed
direction (holds), a clear effect the other way (does not hold), and no effect or too few seeds
(inconclusive), with the seeds an inconclusive one would need.
"""

import math

import numpy as np
import pytest
from scipy import stats

from reglab.lab.study.chapters import STUDIES, capacity, robust
from reglab.lab.study.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Evidence,
    every_seed,
    metric,
    noise_ratio,
    paired_finding,
    trend_finding,
)
from reglab.lab.study.plan import make_plan


def row(arm, seed, gap=0.0, params=100, verdict="good fit", **summary):
    return {
        "arm": arm, "seed": seed, "diagnosis": {"gap_at_end": gap, "verdict": verdict, "best_valid_loss": 1.0},
        "summary": {"num_parameters": params, **summary}, "history": [], "weights": {},
        "recipe": {"data": {"noise_features": 0}},
    }  # fmt: skip


def evidence(rows, plan=None):
    return Evidence(plan, rows)


def _paired_rows(offsets, base=1.0, noise=(0.01, -0.01, 0.02, -0.02, 0.0)):
    """Arm a and reference b over len(offsets) seeds: a = b + offset (per seed)."""
    rows = []
    for s, off in enumerate(offsets):
        b = base + noise[s % len(noise)]
        rows += [row("b", s, test_loss=b), row("a", s, test_loss=b + off)]
    return rows


def test_paired_rule_holds_fails_or_is_inconclusive_with_the_seeds_it_would_need():
    lower = _paired_rows([-0.20, -0.21, -0.19, -0.20])
    found = paired_finding(evidence(lower), "a", "b", "test_loss", lower=True)
    assert found.verdict == HOLDS
    assert found.numbers["diff"] == pytest.approx(-0.20, abs=1e-9)
    expected_p = stats.ttest_rel([r["summary"]["test_loss"] for r in lower if r["arm"] == "a"],
                                 [r["summary"]["test_loss"] for r in lower if r["arm"] == "b"]).pvalue  # fmt: skip
    assert found.numbers["p"] == pytest.approx(expected_p)
    assert paired_finding(evidence(lower), "a", "b", "test_loss", lower=False).verdict == FAILS
    noisy = _paired_rows([0.05, -0.04, 0.06, -0.03])  # no consistent sign
    undecided = paired_finding(evidence(noisy), "a", "b", "test_loss")
    assert undecided.verdict == INCONCLUSIVE and undecided.decide
    small = _paired_rows([-0.10, -0.05])  # a consistent sign, 2 seeds: too few
    few = paired_finding(evidence(small), "a", "b", "test_loss")
    assert few.verdict == INCONCLUSIVE and few.numbers["seeds_needed"] > 2
    assert "seeds would decide it" in few.decide
    assert paired_finding(evidence(small), "a", "missing", "test_loss").verdict == INCONCLUSIVE


def test_holm_over_a_family_can_turn_a_pass_into_inconclusive():
    rows = _paired_rows([-0.05, -0.08, -0.02, -0.06])  # p about 0.03 alone
    alone = paired_finding(evidence(rows), "a", "b", "test_loss")
    others = [dict(r, arm="c") for r in rows if r["arm"] == "b"] + [dict(r, arm="d") for r in rows if r["arm"] == "b"]
    family = paired_finding(evidence(rows + others), "a", "b", "test_loss", family=[("c", "b"), ("d", "b")])
    assert alone.numbers["p_raw"] == family.numbers["p_raw"]
    assert family.numbers["p"] == pytest.approx(min(1.0, 3 * alone.numbers["p_raw"]))  # a's p is the smallest
    assert alone.verdict == HOLDS and family.verdict == INCONCLUSIVE


def test_trend_rule_uses_spearman_over_every_trial():
    up = [row(f"m{i}", s, gap=i + 0.1 * s, params=10**i) for i in range(1, 6) for s in range(2)]
    found = trend_finding(evidence(up), [f"m{i}" for i in range(1, 6)], "params", "gap", +1, "p", "g")
    rho, p = stats.spearmanr([r["summary"]["num_parameters"] for r in up], [r["diagnosis"]["gap_at_end"] for r in up])
    assert (
        found.verdict == HOLDS and found.numbers["rho"] == pytest.approx(rho) and found.numbers["p"] == pytest.approx(p)
    )
    assert trend_finding(evidence(up), [f"m{i}" for i in range(1, 6)], "params", "gap", -1, "p", "g").verdict == FAILS
    flat = [
        row(f"m{i}", s, gap=[0.3, -0.2, 0.1, -0.1, 0.25][(i + s) % 5], params=10**i)
        for i in range(1, 5)
        for s in range(1)
    ]
    weak = trend_finding(evidence(flat), [f"m{i}" for i in range(1, 5)], "params", "gap", +1, "p", "g")
    assert weak.verdict == INCONCLUSIVE
    assert trend_finding(evidence(up[:2]), ["m1"], "params", "gap", +1, "p", "g").verdict == INCONCLUSIVE


def test_every_seed_rule():
    rows = [row("x", s, zero=z) for s, z in enumerate([0.6, 0.7])]
    assert every_seed(evidence(rows), ["x"], "zero", lambda v: v >= 0.5, "≥ 50%", "zeros").verdict == HOLDS
    assert every_seed(evidence(rows), ["x"], "zero", lambda v: v >= 0.9, "≥ 90%", "zeros").verdict == FAILS
    split = every_seed(evidence(rows), ["x"], "zero", lambda v: v >= 0.65, "≥ 65%", "zeros")
    assert split.verdict == INCONCLUSIVE and "1 of 2" in split.measurement


def test_smallest_underfits_largest_overfits_three_ways():
    plan = make_plan(study="capacity", seeds=2)

    def ev(small, large):
        rows = [row("depth-0", s, params=410, verdict=v) for s, v in enumerate(small)]
        rows += [row("width-1024", s, params=10**6, verdict=v) for s, v in enumerate(large)]
        rows += [row("width-64", s, params=5000) for s in range(2)]
        return Evidence(plan, rows)

    claim = next(c for c in capacity.CLAIMS if c.id == "small-underfits-large-overfits")
    assert claim.measure(ev(["underfitting"] * 2, ["overfitting"] * 2)).verdict == HOLDS
    assert claim.measure(ev(["underfitting"] * 2, ["good fit"] * 2)).verdict == FAILS
    assert claim.measure(ev(["underfitting", "good fit"], ["overfitting"] * 2)).verdict == INCONCLUSIVE


def test_robust_claim_compares_the_growth_of_the_clean_error():
    plan = make_plan(study="robust-loss", seeds=3)
    claim = robust.CLAIMS[0]

    def ev(mae_growth, mse_growth):
        rows = []
        for s in range(3):
            jitter = 0.01 * s
            for loss, growth in (("mae", mae_growth), ("mse", mse_growth)):
                rows.append(row(f"{loss}-0", s, test_mse=(0.7 + jitter) ** 2))
                rows.append(row(f"{loss}-0.2", s, test_mse=(0.7 + jitter + growth[s]) ** 2))
        return Evidence(plan, rows)

    assert claim.measure(ev([0.05, 0.06, 0.04], [0.9, 0.8, 0.95])).verdict == HOLDS
    assert claim.measure(ev([0.9, 0.8, 0.95], [0.05, 0.06, 0.04])).verdict == FAILS
    assert claim.measure(ev([0.3, 0.1, 0.5], [0.2, 0.4, 0.3])).verdict == INCONCLUSIVE


def test_metrics_read_from_a_trial():
    r = row("a", 0, gap=0.25, params=77, test_mse=0.49)
    r["weights"] = {"rms": 0.1, "columns": [1.0, 1.0, 3.0, 0.5, 0.5]}
    r["recipe"]["data"]["noise_features"] = 2
    assert metric(r, "gap") == 0.25 and metric(r, "params") == 77
    assert metric(r, "test_rmse") == pytest.approx(0.7) and metric(r, "first_rms") == 0.1
    assert noise_ratio(r) == pytest.approx(0.5 / np.mean([1.0, 1.0, 3.0]))
    r["recipe"]["data"]["noise_features"] = 0
    assert math.isnan(noise_ratio(r))
    assert math.isnan(metric(row("a", 0), "test_confidence"))  # absent: NaN, not an error


def test_every_built_in_study_states_its_claims_and_rules():
    for spec in STUDIES.values():
        ids = [c.id for c in spec.claims]
        assert len(ids) == len(set(ids)), spec.name
        for c in spec.claims:
            assert c.says and c.rule and "holds" in c.rule and "does not hold" in c.rule, (spec.name, c.id)


def _history(offset=0.0, epochs=3):
    return [{"epoch": e + 1, "train_loss": 1.0 / (e + 1) + offset, "valid_loss": 1.2 / (e + 1) + offset}
            for e in range(epochs)]  # fmt: skip


def test_the_sgd_claim_compares_the_two_implementations_with_what_the_penalty_changes():
    from reglab.lab.study.chapters import penalties

    claim = next(c for c in penalties.CLAIMS if c.id == "l2-is-weight-decay-for-sgd")

    def ev(apart):
        rows = []
        for s in range(2):
            for arm, off in (("sgd", 0.3), ("sgd-l2", 0.0), ("sgd-decay", apart)):
                rows.append(dict(row(arm, s), history=_history(off)))
        return Evidence(None, rows)  # no folder: the final weights are not compared

    same = claim.measure(ev(1e-7))
    assert same.verdict == HOLDS and same.numbers["share"] == pytest.approx(1e-7 / 0.3, rel=1e-3)
    assert "final weights not compared" in same.measurement
    assert claim.measure(ev(0.05)).verdict == FAILS, "a sixth of the penalty's own effect is not rounding"
    assert claim.measure(Evidence(None, [row("sgd", 0)])).verdict == INCONCLUSIVE


def test_the_augmentation_claim_needs_a_lower_gap_and_no_higher_test_loss():
    from reglab.lab.study.chapters import augmentation

    plan = make_plan(study="augmentation", arms=["baseline", "cutout"], seeds=4)
    claim = next(c for c in augmentation.CLAIMS if c.id == "cutout-reduces-overfitting")

    def ev(gap_change, loss_change):
        rows = []
        for s in range(4):
            jitter = (0.01, -0.01, 0.02, -0.02)[s]
            rows.append(row("baseline", s, gap=0.5 + jitter, test_loss=1.0 + jitter))
            rows.append(
                row("cutout", s, gap=0.5 + jitter + gap_change + jitter / 10, test_loss=1.0 + jitter + loss_change)
            )
        return Evidence(plan, rows)

    assert claim.measure(ev(-0.3, 0.0)).verdict == HOLDS
    assert claim.measure(ev(-0.3, +0.2)).verdict == FAILS, "a lower gap bought with a higher test loss"
    assert claim.measure(ev(+0.3, -0.2)).verdict == FAILS
    assert claim.measure(ev(0.0, 0.0)).verdict == INCONCLUSIVE
