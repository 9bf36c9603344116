"""The default study's arms on MNIST-1D, shortened (60 epochs, 3 seeds, 2 workers): the
baseline overfits, at least half of the arms beat it on mean test loss, and the report says
which. (The full default study, 100 epochs and 3 seeds, is benchmarks/study.py.)"""

import html
import re

import pytest

from reglab.lab.recipe import Recipe
from reglab.lab.study import make_plan, run_study


@pytest.mark.slow
def test_default_arms_on_mnist1d_cure_the_overfitting_baseline(tmp_path):
    plan = make_plan(Recipe().updated({"training.epochs": 60}), seeds=3)
    board = run_study(plan, tmp_path, workers=2)
    by = {e["arm"]: e for e in board}
    assert set(by) == set(plan.arm_names)
    report = html.unescape((tmp_path / "report.html").read_text())
    assert "The baseline is diagnosed as overfitting in 3 of 3 seeds" in report

    singles = [a for a in plan.arm_names if a != "baseline"]
    lower = [a for a in singles if by[a]["test_loss"] < by["baseline"]["test_loss"]]
    assert len(lower) >= len(singles) / 2, {a: round(by[a]["test_loss"], 3) for a in by}
    better = [a for a in singles if by[a]["verdict"] == "better"]
    sentence = re.search(r"On this data (\d+) of \d+ techniques beat the baseline on test loss: ([^.]*)\.", report)
    assert sentence, "the recommendation names the techniques that helped"
    named = {part.split(" (")[0] for part in sentence.group(2).split(", ")}
    assert named == set(better) - {"combination"} and named, "at least one technique passes the rule"
    assert by["combination"]["verdict"] == "better", "the combination of what helped beats the baseline"
