"""The report and the terminal say one thing each, the way a reader takes it: one best-epoch
definition in the curves and the table, bar colours that follow the comparison the bars show,
zero weights said for which layers, p-values with the digits the rule needs, a leaderboard that
fits the terminal, small charts that read (integer epochs, distinct ticks, a diverged arm said)."""

import math
import re

import numpy as np
import pytest

from reglab.lab.cli import main
from reglab.lab.study import figures
from reglab.lab.study.formats import fmt, p_text
from reglab.lab.study.plan import ARMS
from reglab.lab.study.report import recommendation
from reglab.lab.study.stats import leaderboard, verdicts_on
from reglab.lab.study.terminal import print_leaderboard


def test_p_values_have_the_digits_that_decide_the_rule():
    assert p_text(0.0495) == "0.0495"  # "0.05" next to "worse" under p < 0.05 read as a contradiction
    assert p_text(0.04999) == "0.04999" and p_text(0.0504) == "0.05" and p_text(0.5) == "0.5"
    assert p_text(0.00042) == "< 0.001" and p_text(math.nan) == "–"
    for p in np.linspace(0.001, 0.2, 2000):
        shown = p_text(float(p))
        assert (float(shown) < 0.05) == (p < 0.05), (p, shown)


def test_exploded_numbers_stay_short():
    assert fmt(3.6799816663252568e16) == "3.68e+16" and fmt(1.234) == "1.234"
    assert fmt(2.4e16, "+.0%") == "2.4e+16× base" and fmt(0.09, "+.0%") == "+9%"


def _rows(arms, seeds=3):
    rng = np.random.default_rng(0)
    rows = []
    for i, arm in enumerate(arms):
        for seed in range(seeds):
            loss = 1.2 - 0.02 * i + 0.01 * rng.standard_normal()
            rows.append({"arm": arm, "seed": seed, "test_loss": loss, "test_acc": 0.6 + 0.01 * i,
                         "valid_loss": loss, "best_epoch": 20 + seed, "stopped_epoch": 100, "zero_frac": 0.0,
                         "diagnosis": {"gap_at_end": 0.8}})  # fmt: skip
    return rows


@pytest.mark.parametrize("width", [80, 120])
def test_the_leaderboard_fits_the_terminal_with_whole_arm_names(capsys, width):
    arms = list(ARMS)
    board = leaderboard(_rows(arms), arms)
    print_leaderboard(board, "reglab study", width=width)
    out = capsys.readouterr().out.splitlines()
    assert all(len(line) <= width for line in out), max(map(len, out))
    table = [line for line in out if line.startswith("│")]
    assert len(table) == len(arms)
    names = {line.split("│")[1].strip() for line in table}
    assert names == set(arms), "an arm's name was cut or wrapped"
    header = next(line for line in out if "arm" in line and "verdict" in line)
    assert "test loss" in header and "p" in header.split("┃")[-3]
    if width == 120:
        assert "best ep" in header and "gap" in header


def test_a_single_technique_that_did_not_help_is_said_plainly():
    board = leaderboard(_rows(["baseline", "dropout"], seeds=1), ["baseline", "dropout"])
    words = recommendation(board, {"arms": [], "skipped": [], "changes": {}})
    assert "The one technique tried, dropout, did not beat the baseline" in words
    assert "nothing to combine" in words and "i.e. the baseline" not in words and "None of the 1" not in words


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures the report draws, kept instead of turned into PNG bytes."""
    figs = []

    def keep(fig):
        figs.append(fig)
        return b""

    monkeypatch.setattr(figures, "_png", keep)
    return figs


def test_small_charts_read(drawn):
    ok = [{"epoch": e, "train_loss": 1 / e, "valid_loss": 1.5 / e + 0.1} for e in range(1, 4)]
    bad = [{"epoch": 1, "train_loss": 2.0, "valid_loss": math.nan}]
    figures.learning_curves({"baseline": [ok], "hot": [bad]}, ["baseline", "hot"])
    figures.validation_overlay({"baseline": [ok], "slow": [[{**r, "valid_loss": r["valid_loss"] + 0.01} for r in ok]]},
                               ["baseline", "slow"])  # fmt: skip
    curves, overlay = drawn
    base, hot = curves.axes[:2]
    assert all(float(t).is_integer() for t in base.get_xticks()), "fractional epoch ticks"
    assert base.get_ylabel(), "the y label is on the panel (it was cut off as a figure label)"
    assert any(t.get_text() == "diverged at epoch 1" for t in hot.texts)
    ax = overlay.axes[0]
    overlay.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels


@pytest.mark.slow
def test_a_stored_study_agrees_with_itself(tmp_path, capsys, monkeypatch, drawn):
    out = tmp_path / "s"
    arms = "baseline,early-stopping,l1-proximal,dropout,mixup"
    assert main(["study", "--arms", arms, "--seeds", "3", "--dataset", "digits", "--epochs", "12", "--width", "32",
                 "--quiet", "--out", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    import json

    rows = json.loads((out / "results.json").read_text())
    html = (out / "report.html").read_text()
    curves, _, hist, bars = drawn
    from reglab.lab.study.stats import by_arm

    groups = by_arm(rows)
    # the curves' best epoch is the table's: the mean of the seeds' best epochs
    for ax in curves.axes:
        if not ax.get_title():
            continue
        arm, best = re.match(r"(.+): best epoch (\S+)", ax.get_title()).groups()
        mean = float(np.mean([r["best_epoch"] for r in groups[arm]]))
        assert float(best) == pytest.approx(mean, abs=0.05)
        assert ax.lines[-1].get_xdata()[0] == pytest.approx(mean), "the dashed line marks the same epoch"
        cell = re.search(rf"data-arm='{re.escape(arm)}'>(.*?)</tr>", html).group(1)
        assert f"<td>{mean:.1f}</td>" in cell
    # bar colours follow the comparison of accuracies the bars show
    said = verdicts_on(rows, "test_acc", higher_is_better=True)
    base = float(np.mean([r["test_acc"] for r in groups["baseline"]]))
    colors = {"better": (0.17, 0.63, 0.17), "worse": (0.84, 0.15, 0.16)}
    ax = bars.axes[0]
    for patch, label in zip(ax.patches, [t.get_text() for t in ax.get_xticklabels()]):
        if label == "baseline":
            continue
        mean = float(np.mean([r["test_acc"] for r in groups[label]]))
        rgb = tuple(round(c, 2) for c in patch.get_facecolor()[:3])
        if said[label] == "better":
            assert rgb == colors["better"] and mean > base
        elif said[label] == "worse":
            assert rgb == colors["worse"] and mean < base
        else:
            assert rgb not in colors.values()
    # zero weights: each histogram says first layer and all layers, the latter the run's own
    for ax in hist.axes:
        arm = ax.get_title().split(":")[0]
        every = groups[arm][0]["zero_frac"]
        assert "first layer" in ax.get_title() and f"(all layers: {every:.1%})" in ax.get_title()
    assert "zero weights (all layers)" in html
    # cells do not wrap; the words columns are left-aligned; p-values decide the rule
    assert "white-space:nowrap" in html and "<td class=text>mixup</td>" in html
    for e in leaderboard(rows, arms.split(",")):
        if not math.isnan(e["p_value"]):
            assert f"<td>{p_text(e['p_value'])}</td>" in html
