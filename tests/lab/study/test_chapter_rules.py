"""The optimization chapters' own rules on made-up results: each verdict of each kind of rule."""

import math

import pytest

from reglab.lab.study.chapters import gradients, optimizers
from reglab.lab.study.chapters.common import paired_values, seedwise
from reglab.lab.study.claims import FAILS, HOLDS, INCONCLUSIVE, Evidence


def _row(arm, seed, history=(), **summary):
    return {"arm": arm, "seed": seed, "history": list(history), "weights": {},
            "diagnosis": {"gap_at_end": 0.0, "verdict": "good fit", "best_valid_loss": summary.pop("best", 1.0)},
            "summary": {"train_samples": 3200, **summary},
            "recipe": {"data": {"batch_size": 100, "noise_features": 0}, "optimizer": {"lr": 0.1}}}  # fmt: skip


def test_seedwise_holds_fails_or_is_inconclusive_by_the_seeds():
    def ev(values):
        return Evidence(None, [_row("a", s, x=v) for s, v in enumerate(values)])

    def positive(rows):
        return rows["a"]["summary"]["x"] > 0, "x"

    assert seedwise(ev([1, 2, 3]), ["a"], positive).verdict == HOLDS
    assert seedwise(ev([-1, -2]), ["a"], positive).verdict == FAILS
    mixed = seedwise(ev([1, -2]), ["a"], positive)
    assert mixed.verdict == INCONCLUSIVE and "disagree" in mixed.decide
    assert seedwise(ev([1]), ["a", "b"], positive).verdict == INCONCLUSIVE  # b never ran


def test_paired_values_decides_by_the_holm_corrected_paired_test():
    seeds = range(5)
    noise = [0.01, -0.01, 0.02, -0.02, 0.0]
    low = {s: 1.0 + n for s, n in zip(seeds, noise)}
    high = {s: 2.0 + n / 2 for s, n in zip(seeds, noise)}
    assert paired_values({"x": (low, high)}, "x", ("a", "b"), lower=True).verdict == HOLDS
    assert paired_values({"x": (high, low)}, "x", ("a", "b"), lower=True).verdict == FAILS
    same = {s: v + 1e-3 * (-1) ** s for s, v in low.items()}
    assert paired_values({"x": (same, low)}, "x", ("a", "b"), lower=True).verdict == INCONCLUSIVE
    assert paired_values({"x": ({}, low)}, "x", ("a", "b"), lower=True).verdict == INCONCLUSIVE


def _steps_history(losses):
    return [{"epoch": e, "train_loss": v, "valid_loss": v, "time": 0.1} for e, v in enumerate(losses, start=1)]


@pytest.mark.parametrize(("momentum", "verdict"), [([1.0, 0.4, 0.2], HOLDS), ([1.0, 0.8, 0.6], FAILS)])
def test_momentum_reaches_sgds_final_loss_in_fewer_steps(momentum, verdict):
    rows = []
    for s in range(3):
        rows.append(_row("sgd-lr-0.1", s, _steps_history([1.0, 0.7, 0.5]), best=0.5))
        rows.append(_row("momentum-lr-0.01", s, _steps_history(momentum), best=0.4))
    claim = next(c for c in optimizers.CLAIMS if c.id == "momentum-fewer-steps")
    assert claim.measure(Evidence(None, rows)).verdict == verdict


def test_gradient_ratio_rules_read_the_first_epoch():
    def history(first, last):
        return [{"epoch": 1, "train_loss": 2.0, "valid_loss": 2.0, **{f"grad_norm_{i}": v for i, v in
                 enumerate([first, *[1.0] * 7, last], start=1)}}]  # fmt: skip

    vanish = next(c for c in gradients.CLAIMS if c.id == "sigmoid-gradients-vanish")
    ev = Evidence(None, [_row("sigmoid-xavier", s, history(1e-5, 1.0)) for s in range(3)])
    assert vanish.measure(ev).verdict == HOLDS
    ev = Evidence(None, [_row("sigmoid-xavier", s, history(0.5, 1.0)) for s in range(3)])
    assert vanish.measure(ev).verdict == FAILS
    kept = next(c for c in gradients.CLAIMS if c.id == "relu-gradients-kept")
    ev = Evidence(None, [_row("relu-he", s, history(10**-1.5, 1.0)) for s in range(3)])
    assert kept.measure(ev).verdict == FAILS and math.isclose(ev.values("relu-he", "first_grad_ratio")[0], -1.5)


def test_clipping_claim_wants_the_unclipped_run_diverged_and_the_clipped_one_not():
    claim = next(c for c in gradients.CLAIMS if c.id == "clipping-keeps-rnn-finite")

    def ev(unclipped):
        rows = []
        for s in range(2):
            rows.append(_row("rnn", s, [{"epoch": 1, "train_loss": unclipped}], chance_loss=math.log(10)))
            rows.append(_row("rnn-clipped", s, [{"epoch": 1, "train_loss": 2.5}], chance_loss=math.log(10)))
        return Evidence(None, rows)

    assert claim.measure(ev(float("nan"))).verdict == HOLDS  # non-finite counts as diverged
    assert claim.measure(ev(11.0)).verdict == HOLDS
    assert claim.measure(ev(3.0)).verdict == FAILS
