import math

import numpy as np
import pytest
from scipy import special

from reglab.lab.study.plan import make_plan
from reglab.lab.study.stats import better, combination_changes, family, leaderboard, welch_p


def welch_reference(a, b):
    """Welch's t-test from its formulas in float64: t, Welch-Satterthwaite df, two-sided p
    from the regularized incomplete beta function."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return special.betainc(df / 2, 0.5, df / (df + t * t))


@pytest.mark.parametrize("seed", range(4))
def test_welch_p_equals_float64_reference(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(1.0, 0.2, size=3 + seed), rng.normal(1.3, 0.5, size=3)
    assert welch_p(a, b) == pytest.approx(welch_reference(a, b), rel=1e-10)


def test_better_needs_lower_mean_and_significance():
    base = [1.80, 1.75, 1.90]
    assert better([1.10, 1.15, 1.05], base)
    assert not better([1.70, 1.95, 1.60], base)  # lower mean, not significant
    assert not better([2.5, 2.6, 2.55], base)  # significant, the wrong way
    assert math.isnan(welch_p([1.0], base)) and welch_p([1, 1], [1, 1]) == 1.0 and welch_p([1, 1], [2, 2]) == 0.0


def _rows(arm, test, valid=None):
    return [
        {"arm": arm, "seed": s, "test_loss": t, "test_acc": 1 - t / 3, "valid_loss": (valid or test)[s],
         "best_epoch": 5, "stopped_epoch": 9, "diagnosis": {"gap_at_end": 0.1}, "zero_frac": 0.0}
        for s, t in enumerate(test)
    ]  # fmt: skip


def test_leaderboard_sorts_by_test_loss_and_applies_the_rule():
    rows = (
        _rows("baseline", [1.8, 1.7, 1.9])
        + _rows("dropout", [1.1, 1.2, 1.15])
        + _rows("mixup", [1.6, 1.95, 1.7])
        + _rows("l2", [2.6, 2.7, 2.65])
    )
    board = leaderboard(rows, ["baseline", "dropout", "mixup", "l2"])
    assert [e["arm"] for e in board] == ["dropout", "mixup", "baseline", "l2"]
    verdicts = {e["arm"]: e["verdict"] for e in board}
    assert verdicts == {
        "dropout": "better",
        "mixup": "no significant difference",
        "baseline": "baseline",
        "l2": "worse",
    }
    d = board[0]
    assert d["test_loss"] == pytest.approx(1.15) and d["test_loss_std"] == pytest.approx(
        np.std([1.1, 1.2, 1.15], ddof=1)
    )
    assert d["change"] == pytest.approx(1.15 / 1.8 - 1)


def test_combination_takes_the_best_helper_of_each_family_on_validation_loss():
    plan = make_plan(
        arms=["baseline", "l2", "weight-decay", "dropout", "mixup", "shift", "early-stopping", "combination"]
    )
    test = [1.0, 1.0, 1.0]  # test loss must not matter
    rows = (
        _rows("baseline", test, [1.8, 1.7, 1.9])
        + _rows("l2", test, [1.30, 1.35, 1.32])  # weights, second best of its family
        + _rows("weight-decay", test, [1.20, 1.22, 1.21])  # weights
        + _rows("dropout", test, [1.00, 1.05, 1.02])  # model
        + _rows("mixup", test, [1.6, 1.95, 1.8])  # not significant
        + _rows("shift", test, [0.70, 0.72, 0.71])  # data
        + _rows("early-stopping", test, [1.25, 1.24, 1.26])  # stopping: a fourth family, over the limit
    )
    combo = combination_changes(plan, rows)
    assert combo["arms"] == ["shift", "dropout", "weight-decay"]
    assert combo["skipped"] == ["early-stopping", "l2"]
    assert combo["changes"] == {
        "augment.shift": 4,
        "model.dropout": 0.3,
        "optimizer.options.weight_decay": 0.5,
        "optimizer.options.decoupled": True,
    }


def test_families():
    plan = make_plan()
    fams = {a.name: family(a) for a in plan.arms if a.name != "baseline"}
    assert fams["shift"] == fams["mixup"] == fams["input-noise"] == fams["label-smoothing"] == "data"
    assert fams["l2"] == fams["weight-decay"] == fams["l1-proximal"] == "weights"
    assert (
        fams["dropout"] == fams["batch-norm"] == fams["half-width"] == "model" and fams["early-stopping"] == "stopping"
    )
