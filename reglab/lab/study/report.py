"""A study's report, built from its storage alone: ``report.html`` (self-contained: figures
are embedded PNGs, no scripts, no network), ``results.csv`` and ``results.json`` (one row per
trial), and the leaderboard as a rich table."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reglab._files import atomic_write, folder_lock, make_folder
from reglab.errors import ReglabError
from reglab.lab.plots import LOSS_LABELS
from reglab.lab.run import finite
from reglab.lab.study.arms import ARMS, COMBINATION
from reglab.lab.study.chapters import claims_of, figures_of
from reglab.lab.study.claims import Evidence, run_claims
from reglab.lab.study.formats import fmt, has_accuracy, missing_words, p_text, pm
from reglab.lab.study.plan import Plan
from reglab.lab.study.report_figures import claims_table, general_figures, sweep_figures
from reglab.lab.study.stats import ALPHA, BASELINE, by_arm, leaderboard
from reglab.lab.study.storage import StudyStore

CSV_FIELDS = [
    "arm", "seed", "trial", "test_acc", "test_loss", "valid_loss", "best_epoch", "stopped_epoch", "stop_reason",
    "gap_at_end", "verdict", "zero_frac", "first_zero_frac", "train_seconds", "threads", "matmul", "stacked",
    "stacked_arms", "recipe",
]  # fmt: skip


def collect(store: StudyStore) -> tuple[Plan, list[dict[str, Any]], dict[str, Any]]:
    """The plan, one row per finished trial (metrics, recipe, history, weights), and the
    combination arm's derivation (empty until it is known)."""
    attrs = store.attrs()
    if "plan" not in attrs:
        raise ReglabError(f"the study {store.name!r} holds no reglab plan")
    plan = dataclasses.replace(Plan.from_dict(attrs["plan"]), left_out=attrs.get("left_out", {}))
    rows = []
    for (arm, seed), t in sorted(store.completed().items(), key=lambda kv: kv[1].number):
        s = t.user_attrs["summary"]
        rows.append({
            "arm": arm, "seed": seed, "trial": t.number,
            "test_acc": s.get("test_acc"),  # absent for a regression loss
            **{k: s[k] for k in ("test_loss", "valid_loss", "best_epoch", "stopped_epoch", "stop_reason",
                                 "zero_frac", "first_zero_frac", "train_seconds", "diagnosis", "recipe")},
            "threads": s.get("threads"),  # absent from trials stored by earlier versions
            "matmul": s.get("matmul"),  # the Linear layers' kernel (reglab.matmul), absent as threads
            "stacked": s.get("stacked"),  # the seeds of its arm it trained with as one model; None: alone
            "stacked_arms": s.get("stacked_arms"),  # the arms whose seeds trained with it; None: its arm's alone
            "history": t.user_attrs["history"], "weights": t.user_attrs["weights"], "summary": s,
        })  # fmt: skip
    return plan, rows, attrs.get("combination", {})


class Leaderboard(list):
    """The leaderboard's entries (dicts, best first), and ``missing``: the ``(arm, seed)``
    points of the plan with no finished trial yet (a study stopped part-way)."""

    missing: list[tuple[str, int]] = []


def write_report(store: StudyStore, out: str | Path) -> Leaderboard:
    """Write report.html, results.csv and results.json into ``out``; returns the leaderboard."""
    out = Path(out)
    make_folder(out)
    with folder_lock(out, wait=REPORT_WAIT):  # workers finishing together write one report at a time
        return _write_report(store, out)


REPORT_WAIT = 600.0  # seconds a study waits for another process writing the same folder's report


def _write_report(store: StudyStore, out: Path) -> Leaderboard:
    plan, rows, combo = collect(store)
    names = planned_arms(plan, combo)
    order = [a for a in names if any(r["arm"] == a for r in rows)]
    board = Leaderboard(leaderboard(rows, order, versus_of(plan)))
    done = {(r["arm"], r["seed"]) for r in rows}
    board.missing = [(a, s) for a in names for s in plan.seeds if (a, s) not in done]
    evidence = Evidence(plan, rows, out)
    claims = run_claims(claims_of(plan), evidence)
    atomic_write(
        out / "results.json",
        json.dumps([{k: v for k, v in r.items() if k not in ("weights", "summary")} for r in rows], indent=1),
    )
    atomic_write(out / "results.csv", _csv_text(rows))
    if claims:
        atomic_write(out / "claims.json", json.dumps(finite(claims), indent=1))
    html_text = render_html(plan, rows, board, combo, total=len(names) * len(plan.seeds), claims=claims,
                            evidence=evidence)  # fmt: skip
    atomic_write(out / "report.html", html_text)
    if rows and not board.missing:  # the study's conclusion, where Optuna tools show it
        store.set_attr("recommendation", recommendation(board, combo))
    return board


def versus_of(plan: Plan) -> dict[str, str]:
    """arm -> the arm it is compared with."""
    return {a.name: a.versus for a in plan.arms}


def nothing_to_combine(combo: dict[str, Any]) -> bool:
    """Whether the combination was derived and found no arm that helped (so it is not run)."""
    return bool(combo) and not combo.get("arms")


def planned_arms(plan: Plan, combo: dict[str, Any]) -> list[str]:
    """The arms the study runs: the plan's, less a combination of nothing."""
    return [a for a in plan.arm_names if not (a == COMBINATION and nothing_to_combine(combo))]


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """results.csv: one row per trial, the recipe as JSON."""
    with io.StringIO(newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            d = r["diagnosis"]
            writer.writerow(
                {
                    **{k: r.get(k) for k in CSV_FIELDS},
                    "gap_at_end": d["gap_at_end"],
                    "verdict": d["verdict"],
                    "stacked": " ".join(map(str, r["stacked"])) if r.get("stacked") else "",
                    "stacked_arms": " ".join(r["stacked_arms"]) if r.get("stacked_arms") else "",
                    "recipe": json.dumps(r["recipe"]),
                }
            )
        return f.getvalue()


# -- words ---------------------------------------------------------------------------------------
def baseline_words(rows: Sequence[dict[str, Any]]) -> str:
    base = by_arm(rows).get(BASELINE)
    if not base:
        return "The study has no finished baseline trial, so there is no diagnosis to report."
    verdicts = Counter(r["diagnosis"]["verdict"] for r in base)
    verdict, count = verdicts.most_common(1)[0]
    return (
        f"The baseline is diagnosed as {verdict} in {count} of {len(base)} seeds. Seed {base[0]['seed']}: "
        f"{base[0]['diagnosis']['explanation']}"
    )


def recommendation(board: Sequence[dict[str, Any]], combo: dict[str, Any]) -> str:
    if not any(e["arm"] == BASELINE for e in board):
        return "Without a baseline arm there is nothing to compare with."
    singles = [e for e in board if e["arm"] not in (BASELINE, COMBINATION)]
    helped = [e for e in singles if e["verdict"] == "better"]
    parts = []
    if helped:
        listed = ", ".join(f"{e['arm']} ({e['change']:+.0%})" for e in helped)
        parts.append(
            f"On this data {len(helped)} of {len(singles)} techniques beat the baseline on test loss: {listed}."
        )
        accuracy = f", accuracy {helped[0]['test_acc']:.1%}" if has_accuracy(board) else ""
        parts.append(
            f"The best single technique is {helped[0]['arm']} (test loss {helped[0]['test_loss']:.3f}{accuracy})."
        )
    elif len(singles) == 1:
        only = singles[0]["arm"]
        parts.append(f"The one technique tried, {only}, did not beat the baseline on test loss by the rule below.")
    else:
        parts.append(f"None of the {len(singles)} techniques beat the baseline on test loss by the rule below.")
    worse = [e["arm"] for e in singles if e["verdict"] == "worse"]
    if worse:
        parts.append(f"Worse than the baseline: {', '.join(worse)}.")
    diverged = [e["arm"] for e in singles if e["verdict"] == "diverged"]
    if diverged:
        parts.append(f"Diverged: {', '.join(diverged)} (a seed's loss became NaN or infinite; see the arm's runs).")
    entry = next((e for e in board if e["arm"] == COMBINATION), None)
    if nothing_to_combine(combo):
        parts.append("No technique beat the baseline on validation loss, so there was nothing to combine and the "
                     "combination arm was not run.")  # fmt: skip
    elif entry is not None:
        line = (
            f"The combination of {', '.join(combo.get('arms') or [])} reached test loss "
            f"{pm(entry['test_loss'], entry['test_loss_std'])} ({fmt(entry['change'], '+.0%')} vs baseline; "
            f"{entry['verdict']})"
        )
        if helped:
            line += (
                f", {'better' if entry['test_loss'] < helped[0]['test_loss'] else 'not better'} than "
                f"{helped[0]['arm']} alone"
            )
        parts.append(line + ".")
        if combo.get("skipped"):
            parts.append(
                "Helpers left out of the combination (a better arm of their family was in, or three were): "
                f"{', '.join(combo['skipped'])}."
            )
    return " ".join(parts)


RULE = (
    "Rule: each arm is compared with the baseline seed by seed (the runs of one seed share their validation "
    "split, their batch order and, for the same architecture, their initial weights): a paired two-sided t-test "
    "on the per-seed differences of test loss, whose mean is shown with its 95% t interval; the p-values of all "
    f"the arms are corrected together by Holm–Bonferroni. An arm is <b>better</b> when its corrected p &lt; {ALPHA} "
    "and its mean is lower, <b>worse</b> when the corrected p &lt; "
    f"{ALPHA} and its mean is higher, and <b>inconclusive</b> otherwise (with the number of seeds at which the "
    "observed difference and spread would pass); <b>diverged</b> when a seed's test loss is NaN or infinite "
    "(its training loss became non-finite). "
    "The combination arm merges, among the arms that pass this rule on <i>validation</i> loss, the best of each family "
    "(data: augmentation, noise, mixing; weights: penalties, decay; model: dropout, normalization, width; stopping), "
    "at most "
    "three, best first, so the test set never chooses what to combine."
)


# -- HTML ----------------------------------------------------------------------------------------
def stack_names(rows: list[dict[str, Any]]):
    """An arm's name for the report's list of stacked arms, with its groups where its seeds did
    not all train as one model (the combination, split over the workers: "combination (seeds 0
    1 together, 2 alone)")."""

    def name(arm: str) -> str:
        seen = {tuple(r["summary"].get("stacked") or (r["seed"],)) for r in rows if r["arm"] == arm}
        if len(seen) == 1:
            return arm
        parts = [
            " ".join(map(str, g)) + (" together" if len(g) > 1 else " alone") for g in sorted(seen, key=lambda g: g[0])
        ]
        return f"{arm} (seeds {', '.join(parts)})"

    return name


def stack_units(rows: list[dict[str, Any]], stacked: list[str]) -> list[tuple[str, ...]]:
    """The stacked arms as the groups they trained in: an arm alone, or the arms whose seeds
    trained as one model (``stacked_arms``: arms that differ only in what their batches go
    through, their early stopping, their weight decay and proximal L1), each listed once, in the
    order of their first arm's name."""
    units: dict[tuple[str, ...], None] = {}
    for arm in stacked:
        groups = [tuple(r["summary"].get("stacked_arms") or (arm,)) for r in rows if r["arm"] == arm]
        unit = tuple(sorted(set(groups[0]).union(*groups)))  # all its seeds' group's arms
        if not any(arm in u for u in units):
            units[unit] = None
    return list(units)


def render_html(
    plan: Plan,
    rows: list[dict[str, Any]],
    board: list[dict[str, Any]],
    combo: dict[str, Any],
    total: int,
    claims: Sequence[dict[str, Any]] = (),
    evidence: Evidence | None = None,
) -> str:
    esc = html.escape
    curves = {arm: [r["history"] for r in rs] for arm, rs in by_arm(rows).items()}
    order = [e["arm"] for e in board]
    body = [f"<h1>reglab study: {esc(plan.name)}</h1>"]
    b = plan.base
    loss = LOSS_LABELS[b.training.loss]
    body.append(
        f"<p class=meta>{len(rows)} of {total} trials finished · data <b>{esc(b.data.name)}</b> · {loss} · model "
        + (
            f"{esc(b.model.kind)} {b.model.depth}×{b.model.resolved_width} {esc(b.model.activation)}"
            if b.model.depth
            else "linear (no hidden layer)"
        )
        + f" · {esc(b.optimizer.name)} lr "
        f"{b.optimizer.lr:g} · "
        f"{b.training.epochs} epochs · batch {b.data.batch_size} · seeds {', '.join(map(str, plan.seeds))}</p>"
    )
    stacked = sorted({r["arm"] for r in rows if r["summary"].get("stacked")})
    if stacked:
        apart, named = sorted({r["arm"] for r in rows} - set(stacked)), stack_names(rows)
        units = stack_units(rows, stacked)
        joined = "; arms joined by + as one model" if any(len(u) > 1 for u in units) else ""
        body.append(
            f"<p class=meta>Trained stacked (each arm's seeds as one model{joined}): "
            + esc(", ".join(" + ".join(map(named, u)) for u in units))
            + (f"; one trial at a time: {esc(', '.join(apart))}" if apart else "")
            + ".</p>"
        )
    if getattr(board, "missing", None):
        body.append(
            f"<p class=missing>Not finished yet: {esc(missing_words(board.missing))}; run the study again to finish "
            "them.</p>"
        )
    if claims:
        body += ["<h2>What the course says — what this data shows</h2>", claims_table(claims)]
    if rows and any(a.name == BASELINE for a in plan.arms):
        body += [
            "<h2>Diagnosis and recommendation</h2>",
            f"<p>{esc(baseline_words(rows))}</p>",
            f"<p class=rec>{esc(recommendation(board, combo))}</p>",
        ]
    rule = RULE if plan.combination else RULE[: RULE.index(" The combination arm")]
    if any(a.versus != BASELINE for a in plan.arms):
        rule += " Here an arm is compared with the arm named in the Arms table below (its own baseline)."
    if all(e["verdict"] == "no baseline" for e in board):
        rule = "No arm here has a baseline to be compared with: the claims above read the arms' results."
    body += ["<h2>Leaderboard</h2>", f"<div class=wide>{_table(board)}</div>", f"<p class=rule>{rule}</p>"]
    if rows:
        own = figures_of(plan)
        if own is not None:
            body += own(evidence or Evidence(plan, rows))
        elif plan.sweeps:
            body += sweep_figures(plan, rows)
        body += general_figures(rows, board, curves, order, loss, histograms=own is None, versus=versus_of(plan))
    body += ["<h2>Arms</h2>", _arms_table(plan, combo)]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{padding:.3em .55em;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
        "th{white-space:normal;vertical-align:bottom}td.text,th.text,table.arms td,table.arms th{text-align:left}"
        "table.arms td{white-space:normal}"
        ".caption{color:#555;margin-top:-.5em;max-width:60em}.wide{overflow-x:auto}"
        "tr.better{background:#e9f7ec}tr.worse{background:#fbeaea}tr.diverged{background:#fbeaea;font-style:italic}"
        "tr.baseline{font-weight:bold}img{max-width:100%;display:block;margin:1em 0}"
        "table.claims td{text-align:left;white-space:normal;vertical-align:top;max-width:30em}"
        "table.claims td.rule{color:#555;font-size:.9em}tr.claim.holds td:last-child{background:#e9f7ec}"
        "tr.claim.fails td:last-child{background:#fbeaea}tr.claim.inconclusive td:last-child{background:#f3f3f3}"
        ".meta,.rule{color:#555}.missing{color:#a60}"
        ".rec{font-size:1.1em}code{background:#f3f3f3;padding:0 .2em}"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>reglab study: '
        f"{esc(plan.name)}</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _table(board: Sequence[dict[str, Any]]) -> str:
    acc = has_accuracy(board)
    head = [
        "arm",
        "seeds",
        *(["test accuracy"] if acc else []),
        "test loss",
        "vs baseline",
        "best epoch (seed mean)",
        "stopped epoch",
        "final gap",
        "zero weights (all layers)",
        "Δ test loss (95% CI)",
        "p (paired, Holm)",
        "verdict",
    ]
    text = {0, len(head) - 1}  # the arm and the verdict: words, left-aligned
    cls = [" class=text" if i in text else "" for i in range(len(head))]
    heads = "".join(f"<th{c}>{h}</th>" for c, h in zip(cls, head))
    lines = [f"<table id=leaderboard><thead><tr>{heads}</tr></thead><tbody>"]
    for e in board:
        cells = [
            e["arm"], str(e["seeds"]), *([pm(e["test_acc"], e["test_acc_std"])] if acc else []),
            pm(e["test_loss"], e["test_loss_std"]),
            "–" if e["verdict"] == "baseline" else fmt(e["change"], "+.1%"),
            f"{e['best_epoch']:.1f}", f"{e['stopped_epoch']:.1f}",
            fmt(e["gap"]), f"{e['zero_frac']:.1%}", _interval(e), p_text(e["p_value"]), _said(e),
        ]  # fmt: skip
        css = e["verdict"].split()[0]
        lines.append(
            f"<tr class={css} data-arm='{html.escape(e['arm'])}'>"
            + "".join(f"<td{c}>{html.escape(cell)}</td>" for c, cell in zip(cls, cells))
            + "</tr>"
        )
    return "\n".join(lines) + "</tbody></table>"


def _interval(e: dict[str, Any]) -> str:
    """``−0.42 [−0.61, −0.23]``: the mean paired difference from the baseline and its 95% interval."""
    if math.isnan(e.get("diff", math.nan)):
        return "–"
    return f"{fmt(e['diff'], '+.3f')} [{fmt(e['diff_low'], '+.3f')}, {fmt(e['diff_high'], '+.3f')}]"


def _said(e: dict[str, Any]) -> str:
    """The verdict, and for an inconclusive arm the seeds its observed effect would need."""
    if e["verdict"] != "inconclusive":
        return e["verdict"]
    n = e.get("seeds_needed")
    return f"inconclusive ({'needs ' + str(n) + ' seeds' if n else 'no effect to detect'})"


def _arms_table(plan: Plan, combo: dict[str, Any]) -> str:
    head = "<tr><th>arm</th><th>what it does</th><th>recipe changes</th></tr>"
    lines = [f"<table class=arms><thead>{head}</thead><tbody>"]
    arms = [(a.name, a.description, a.changes) for a in plan.arms]
    if plan.combination and not nothing_to_combine(combo):
        arms.append(
            (
                COMBINATION,
                ARMS[COMBINATION][0] + (f": {', '.join(combo['arms'])}" if combo.get("arms") else ""),
                combo.get("changes", {}),
            )
        )
    versus = versus_of(plan)
    for name, desc, changes in arms:
        text = ", ".join(f"{k} = {v!r}" for k, v in changes.items()) or "none"
        if versus.get(name, BASELINE) not in (BASELINE, name):
            desc += f" (compared with {versus[name]})"
        elif versus.get(name) == name:
            desc += " (a baseline of its own)"
        lines.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(desc)}</td>"
            f"<td><code>{html.escape(text)}</code></td></tr>"
        )
    left_out = dict(plan.left_out)
    if plan.combination and nothing_to_combine(combo):
        left_out[COMBINATION] = "had nothing to combine: no technique beat the baseline on validation loss"
    for name, why in left_out.items():
        lines.append(
            f"<tr class=left-out><td>{html.escape(name)}</td><td>not run: it {html.escape(why)}</td><td></td></tr>"
        )
    return "\n".join(lines) + "</tbody></table>"
