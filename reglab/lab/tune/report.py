"""The search's report, ``OUT/report.html`` (self-contained: embedded PNGs, no scripts): the
confirmation table, what the search found in words, the best recipe, the optimization history,
the parameters' importances (``optuna.importance``) and one slice plot per strength."""

from __future__ import annotations

import html
import math
from typing import Any

from reglab.lab.recipe import Recipe
from reglab.lab.study.formats import caption_html, fmt, img_html, p_text, pm
from reglab.lab.study.stats import ALPHA, paired
from reglab.lab.tune.space import Space, use_key


def _trials(study: Any) -> tuple[list[Any], list[Any]]:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    return complete, pruned


def importances(study: Any) -> dict[str, float]:
    """Each parameter's share of the variance of the validation loss (fANOVA, Optuna's default
    evaluator, seeded), over the complete trials; empty below 3 of them."""
    import optuna

    complete, _ = _trials(study)
    if len(complete) < 3 or len({t.value for t in complete}) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))


def findings(study: Any, space: Space, shares: dict[str, float]) -> list[str]:
    """What the search found, in words: the parameter that matters most, and which techniques
    the best 10% of complete trials kept or switched off."""
    complete, pruned = _trials(study)
    said = []
    if shares:
        top, share = next(iter(shares.items()))
        said.append(f"{top} matters most ({share:.0%} of the variance of the validation loss explained).")
    if complete:
        best = sorted(complete, key=lambda t: t.value)[: max(1, math.ceil(len(complete) / 10))]
        kept = [t.name for t in space.techniques if all(b.params.get(use_key(t.name)) for b in best)]
        off = [t.name for t in space.techniques if not any(b.params.get(use_key(t.name)) for b in best)]
        who = f"the best {len(best)} of {len(complete)} complete trials" if len(best) > 1 else "the best trial"
        if kept:
            said.append(f"In {who}, on: {', '.join(kept)}.")
        if off:
            said.append(f"Switched off in {who}: {', '.join(off)}.")
    if pruned:
        said.append(f"The pruner stopped {len(pruned)} trials early.")
    return said


def comparison(rows: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """``a`` against ``b`` on test loss, seed by seed (the study's paired t-test, one comparison)."""
    values = {arm: {r["seed"]: r["test_loss"] for r in rows if r["arm"] == arm} for arm in (a, b)}
    effect = paired(values[a], values[b])
    if math.isnan(effect.p) or effect.p >= ALPHA:
        verdict = "inconclusive"
    else:
        verdict = "better" if effect.diff < 0 else "worse"
    return {"arm": a, "versus": b, "diff": effect.diff, "low": effect.low, "high": effect.high, "p": effect.p,
            "seeds": effect.n, "verdict": verdict}  # fmt: skip


def write_tune_report(study: Any, space: Space, base: Recipe, best: dict[str, Any], plan: Any, board: list,
                      out: Any, against: str) -> dict[str, Any]:  # fmt: skip
    """Write ``out/report.html``; returns the report's content as a dict (``tune.json``)."""
    import json

    from reglab._files import atomic_write

    rows = json.loads((out / "confirm" / "results.json").read_text(encoding="utf-8"))
    versus = comparison(rows, "tuned", against)
    shares = importances(study)
    complete, pruned = _trials(study)
    said = findings(study, space, shares)
    result = {
        "best_changes": best, "best_value": min((t.value for t in complete), default=math.nan),
        "trials": {"complete": len(complete), "pruned": len(pruned)},
        "confirmation": [{k: e.get(k) for k in ("arm", "seeds", "test_loss", "test_loss_std", "test_acc",
                                                 "test_acc_std", "p_value", "verdict")} for e in board],
        "tuned_vs_against": versus, "importances": shares, "findings": said,
    }  # fmt: skip
    atomic_write(out / "report.html", _html(study, space, base, best, board, versus, shares, said, against))
    return result


def _html(study, space, base, best, board, versus, shares, said, against) -> str:
    from reglab.lab.tune import figures

    esc = html.escape
    complete, pruned = _trials(study)
    acc = any(e.get("test_acc") is not None and not math.isnan(e["test_acc"]) for e in board)
    body = [f"<h1>reglab tune: {esc(study.study_name)}</h1>",
            f"<p class=meta>{len(complete)} complete and {len(pruned)} pruned trials · data <b>"
            f"{esc(base.data.name)}</b> · {esc(base.model.kind)} · {base.training.epochs} epochs · techniques "
            f"{esc(', '.join(t.name for t in space.techniques))} · objective: validation loss (the test set is not "
            "used by the search)</p>",
            "<h2>What the search found</h2>", *[f"<p>{esc(s)}</p>" for s in said]]  # fmt: skip
    head = "<tr><th class=text>arm</th><th>seeds</th>" + ("<th>test accuracy</th>" if acc else "") + (
        "<th>test loss</th><th>vs baseline (p, Holm)</th><th class=text>verdict</th></tr>")  # fmt: skip
    lines = [f"<table id=confirmation><thead>{head}</thead><tbody>"]
    for e in board:
        cells = [f"<td class=text>{esc(e['arm'])}</td>", f"<td>{e['seeds']}</td>"]
        if acc:
            cells.append(f"<td>{pm(e['test_acc'], e['test_acc_std'])}</td>")
        cells += [f"<td>{pm(e['test_loss'], e['test_loss_std'])}</td>", f"<td>{p_text(e['p_value'])}</td>",
                  f"<td class=text>{esc(e['verdict'])}</td>"]  # fmt: skip
        lines.append(f"<tr data-arm='{esc(e['arm'])}'>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    body += [
        "<h2>Confirmation on fresh seeds</h2>", "\n".join(lines),
        f"<p class=rule>The tuned recipe, the baseline and {esc(against)} (the default study's best single arm, "
        f"at its default strength) trained on seeds never used by the search. Tuned against {esc(against)}, seed by "
        f"seed: Δ test loss {fmt(versus['diff'], '+.3f')} [{fmt(versus['low'], '+.3f')}, {fmt(versus['high'], '+.3f')}"
        f"], p = {p_text(versus['p'])} (paired t-test): <b>{esc(versus['verdict'])}</b>. The table's p-values "
        "compare each arm with the baseline (Holm-corrected), as a study does.</p>",
        "<h2>The best recipe</h2>", _changes_table(best),
        "<p>Written as <code>best.toml</code>: <code>reglab train --recipe best.toml</code> trains it.</p>",
    ]  # fmt: skip
    if complete or pruned:
        body += [
            "<h2>Optimization history</h2>",
            img_html(figures.history_png(study), "validation loss per trial"),
            caption_html(
                "Each trial's validation loss in the order it started (pruned trials at the last value "
                "they reported, as crosses); the line is the best so far."
            ),  # fmt: skip
        ]
    if shares:
        body += [
            "<h2>What matters</h2>",
            img_html(figures.importance_png(shares), "parameter importances"),
            caption_html("fANOVA importance of each parameter (Optuna): the share of the validation loss's variance "
                         "over the complete trials that it explains; use.NAME is a technique's on/off switch."),
        ]  # fmt: skip
    numeric = [d for d in space.dims if d.choices is None]
    if complete and numeric:
        body += [
            "<h2>Each strength against the validation loss</h2>",
            img_html(figures.slices_png(study, space), "slice plots"),
            caption_html(
                "One panel per strength: the validation loss of each complete trial against the value it "
                "tried, coloured where its technique was on and grey where it was switched off (and the "
                "value unused)."
            ),  # fmt: skip
        ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{padding:.3em .6em;border-bottom:1px solid #ddd;"
        "text-align:right}td.text,th.text{text-align:left}img{max-width:100%;display:block;margin:1em 0}"
        ".caption,.meta,.rule{color:#555}.caption{margin-top:-.5em}code{background:#f3f3f3;padding:0 .2em}"
    )
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>reglab tune: "
            f"{esc(study.study_name)}</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")  # fmt: skip


def _changes_table(best: dict[str, Any]) -> str:
    if not best:
        return "<p>Every technique switched off: the base recipe itself.</p>"
    rows = "".join(
        f"<tr><td class=text><code>{html.escape(k)}</code></td><td>{html.escape(_value(v))}</td></tr>"
        for k, v in best.items()
    )
    return f"<table id=best><thead><tr><th class=text>recipe key</th><th>value</th></tr></thead><tbody>{rows}" \
           "</tbody></table>"  # fmt: skip


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
