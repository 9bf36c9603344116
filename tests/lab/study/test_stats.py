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
        "mixup": "inconclusive",  # lower mean, not significant once paired and corrected
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


# -- the paired rule, corrected for many arms -------------------------------------------------------
from reglab.lab.study.stats import ALPHA, Paired, compare, holm, paired, seeds_needed  # noqa: E402


def paired_reference(a, b):
    """The paired t-test from its formulas in float64: d = a − b, t = mean/(sd/√n), two-sided p
    from Student's t distribution (scipy.special.stdtr), the 95% interval mean ± t* sd/√n."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n, mean, sd = len(d), d.mean(), d.std(ddof=1)
    t = mean / (sd / math.sqrt(n))
    p = 2 * special.stdtr(n - 1, -abs(t))
    half = special.stdtrit(n - 1, 0.975) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, p


@pytest.mark.parametrize("seed", range(4))
def test_paired_equals_its_float64_reference(seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(1.0, 0.5, size=3 + seed)
    arm = base - 0.2 + rng.normal(0, 0.1, size=len(base))
    got = paired(dict(enumerate(arm)), dict(enumerate(base)))
    assert (got.diff, got.low, got.high, got.p) == pytest.approx(paired_reference(arm, base), rel=1e-9)
    assert got.n == len(base)


def test_paired_pairs_by_seed_and_skips_seeds_one_side_lacks():
    base = {0: 1.0, 1: 2.0, 2: 3.0, 7: 9.0}
    arm = {2: 2.9, 0: 0.8, 1: 1.85}  # another order, no seed 7
    got = paired(arm, base)
    assert got.n == 3 and got.diff == pytest.approx(np.mean([-0.2, -0.15, -0.1]))
    assert math.isnan(paired({0: 1.0}, base).p) and math.isnan(paired({0: 1.0, 1: math.nan}, base).p)


def holm_reference(p):
    """Holm's step-down procedure written out: reject the i-th smallest while p_(i) <= α/(m − i);
    the adjusted p is the smallest α at which each hypothesis is rejected."""
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    for rank, i in enumerate(order):
        adjusted[i] = min(1.0, max((m - j) * p[order[j]] for j in range(rank + 1)))
    return adjusted


def test_holm_equals_the_step_down_procedure():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 15))
        assert holm(list(p)) == pytest.approx(list(holm_reference(p)), rel=1e-12)
    assert holm([0.01, math.nan, 0.04]) == pytest.approx([0.02, math.nan, 0.04], nan_ok=True)


def test_seeds_needed_is_the_first_seed_count_that_passes():
    effect = Paired(3, -0.3, math.nan, math.nan, 0.2, 0.4)
    n = seeds_needed(effect, m=12)
    from scipy import stats

    def passes(k):
        return 0.3 / (0.4 / math.sqrt(k)) > stats.t.ppf(1 - ALPHA / 12 / 2, k - 1)

    assert passes(n) and not passes(n - 1)
    assert seeds_needed(Paired(3, 0.0, 0, 0, 1.0, 0.4), m=12) is None


def test_the_three_verdicts_on_made_up_results():
    rows = (
        _rows("baseline", [1.8, 1.7, 1.9, 1.75])
        + _rows("better", [1.5, 1.41, 1.6, 1.44])  # −0.3 on every seed, ± 0.01
        + _rows("worse", [2.1, 2.02, 2.19, 2.06])
        + _rows("unclear", [1.7, 1.9, 1.6, 1.8])
    )
    board = {e["arm"]: e for e in leaderboard(rows, ["baseline", "better", "worse", "unclear"])}
    assert board["better"]["verdict"] == "better" and board["worse"]["verdict"] == "worse"
    assert board["unclear"]["verdict"] == "inconclusive"
    assert board["unclear"]["seeds_needed"] > 100, "a mean difference of −0.04 in a spread of 0.22 needs many seeds"
    assert board["better"]["diff_low"] < board["better"]["diff"] < board["better"]["diff_high"] < 0
    assert board["better"]["p_value"] >= board["better"]["p_raw"], "corrected for three arms"


def _simulated_study(rng, arms, seeds, tau, sigma, effects):
    """Made-up results: run = 1 + effect(arm) + u_seed + ε, u_seed ~ N(0, τ²) shared by the runs of
    a seed (their split, batch order and initial weights), ε ~ N(0, σ²) each run's own."""
    u = rng.normal(0, tau, size=seeds)
    return {
        a: [{"seed": s, "m": 1.0 + effects.get(a, 0.0) + u[s] + rng.normal(0, sigma)} for s in range(seeds)]
        for a in ["baseline", *arms]
    }


ARMS12 = [f"arm{i}" for i in range(12)]


@pytest.mark.slow
def test_a_null_study_calls_some_arm_better_in_fewer_than_5_percent_of_1000():
    rng = np.random.default_rng(0)
    some = sum(
        any(
            v["verdict"] == "better"
            for v in compare(_simulated_study(rng, ARMS12, 3, 1.0, 1.0, {}), ARMS12, "m").values()
        )
        for _ in range(1000)
    )
    assert some / 1000 < 0.05, some


def _found(rng, arms, seeds, tau, runs=200, welch_too=False):
    sd = math.sqrt(tau**2 + 1)  # the spread of one run: two of these is the effect
    paired_found = welch_found = 0
    for _ in range(runs):
        study = _simulated_study(rng, arms, seeds, tau, 1.0, {arms[0]: -2 * sd})
        paired_found += compare(study, arms, "m")[arms[0]]["verdict"] == "better"
        if welch_too:
            base = [r["m"] for r in study["baseline"]]
            adjusted = holm([welch_p([r["m"] for r in study[a]], base) for a in arms])
            welch_found += adjusted[0] < ALPHA
    return paired_found / runs, welch_found / runs


def test_a_real_effect_of_two_standard_deviations_on_five_seeds_is_found():
    """One arm against the baseline, 5 seeds, an effect of two standard deviations of a run."""
    found, _ = _found(np.random.default_rng(1), ["arm0"], 5, tau=1.0)
    assert found >= 0.8, found


@pytest.mark.slow
def test_pairing_finds_an_effect_that_welch_misses_when_seeds_spread_widely():
    """12 arms, 5 seeds, one real effect of two standard deviations of a run, where the seeds
    share most of the spread (τ = 3σ): the paired test sees through it, Welch's does not."""
    found, welch = _found(np.random.default_rng(1), ARMS12, 5, tau=3.0, welch_too=True)
    assert found >= 0.85 and welch <= 0.6, (found, welch)
