"""The report's figure sections and its claims table (HTML parts of ``report.html``)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from reglab.lab.study import figures
from reglab.lab.study.claims import VERDICTS
from reglab.lab.study.formats import caption_html, has_accuracy, img_html
from reglab.lab.study.plan import Plan
from reglab.lab.study.stats import by_arm, verdicts_on


def general_figures(
    rows: list[dict[str, Any]],
    board: Sequence[dict[str, Any]],
    curves: dict[str, list],
    order: list[str],
    loss: str,
    histograms: bool = True,
    versus: dict[str, str] | None = None,
) -> list[str]:
    """The report's figures, each with the one sentence that says what to look at."""
    best = {e["arm"]: e["best_epoch"] for e in board}
    out = [
        "<h2>Learning curves</h2>",
        img_html(figures.learning_curves(curves, order, loss, best=best), "train vs validation loss per arm"),
        caption_html(
            "Training and validation loss per epoch, each the mean over the seeds. The dashed line is the arm's "
            "best epoch as in the leaderboard: the mean of the seeds' best epochs (each seed's epoch of lowest "
            "validation loss). Look for the validation curve turning up while the training curve goes on down."
        ),
        "<h2>Validation loss, all arms</h2>",
        img_html(figures.validation_overlay(curves, order), "validation loss of all arms"),
        caption_html("Every arm's validation loss (mean over seeds, log scale) against the baseline's, in black."),
    ]
    groups = by_arm(rows)
    shown = [arm for arm in ("baseline", "l1-proximal", "l2") if arm in curves]
    if shown and histograms:
        hist = {arm: groups[arm][0]["weights"] for arm in shown}
        every = {arm: groups[arm][0].get("zero_frac") or 0.0 for arm in shown}
        seeds = ", ".join(f"{arm} seed {groups[arm][0]['seed']}" for arm in shown)
        out += [
            "<h2>First-layer weights</h2>",
            img_html(figures.weight_histograms(hist, all_zero=every), "first-layer weight histograms"),
            caption_html(
                f"The first layer's weights of one run per arm ({html.escape(seeds)}), log counts so that exact zeros "
                "show. Each title gives that run's fraction of exactly-zero weights in the first layer and in all "
                "layers; the leaderboard's zero weights are all layers', averaged over the seeds."
            ),
        ]
    if has_accuracy(board):
        said = verdicts_on(rows, "test_acc", higher_is_better=True, versus=versus)
        out += [
            "<h2>Test accuracy</h2>",
            img_html(figures.metric_bars(board, "test_acc", "test accuracy", verdicts=said), "test accuracy per arm"),
            caption_html(
                "Test accuracy per arm, mean ± std over the seeds. The colours apply the leaderboard's rule to "
                "accuracy itself (paired over seeds, Holm-corrected): green higher than the baseline's, red lower, "
                "grey inconclusive, so an arm better on loss may be grey or red here."
            ),
        ]
    else:  # regression: the test loss is the measure
        said = {e["arm"]: e["verdict"] for e in board}
        out += [
            "<h2>Test loss</h2>",
            img_html(figures.metric_bars(board, "test_loss", f"test {loss}", verdicts=said), "test loss per arm"),
            caption_html("Test loss per arm, mean ± std over the seeds, coloured by the leaderboard's verdict."),
        ]
    return out


def sweep_figures(plan: Plan, rows: list[dict[str, Any]]) -> list[str]:
    """A study file's sweeps: per axis, the best and final validation loss and the final gap
    against the swept value."""
    from reglab.lab.study.arms import sweep_arms

    groups = by_arm(rows)
    out = []
    for key, values in plan.sweeps.items():
        arms = [n for n, (_, changes) in sweep_arms({key: values}).items() if n in groups]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if not arms or not numeric:
            continue
        positive = all(v > 0 for v in values)
        log_x = positive and max(values) / min(values) >= 8
        png = figures.sweep_curves(groups, {key: arms}, f"recipe:{key}", key, log_x=log_x)
        out += [
            f"<h2>Sweep of {html.escape(key)}</h2>",
            img_html(png, f"validation loss and gap against {key}"),
            caption_html(
                f"Each point is one value of {html.escape(key)} (mean over seeds, bars ± std): the best and the final "
                "validation loss and the final generalization gap (validation − training loss at the last epoch)."
            ),
        ]
    return out


def claims_table(claims: Sequence[dict[str, Any]]) -> str:
    """The course's claims and what this study's data show, one row per claim."""
    esc = html.escape
    head = "<tr><th class=text>what the course says</th><th class=text>what this data shows</th>" \
           "<th class=text>rule</th><th class=text>verdict</th></tr>"  # fmt: skip
    lines = [f"<table id=claims class=claims><thead>{head}</thead><tbody>"]
    for c in claims:
        css = {v: k for k, v in zip(("holds", "fails", "inconclusive"), VERDICTS)}[c["verdict"]]
        said = esc(c["measurement"]) + (f"<br><i>{esc(c['decide'])}</i>" if c.get("decide") else "")
        says = esc(c["claim"]) + (f"<br><small>{esc(c['depends'])}</small>" if c.get("depends") else "")
        lines.append(
            f"<tr class='claim {css}' data-claim='{esc(c['id'])}'><td>{says}</td><td>{said}</td>"
            f"<td class=rule>{esc(c['rule'])}</td><td><b>{esc(c['verdict'])}</b></td></tr>"
        )
    return "\n".join(lines) + "</tbody></table>"
