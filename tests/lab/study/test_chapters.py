"""The built-in studies, shortened (2 epochs, 2 seeds, on their real data sets): each runs, its
report opens in headless Chromium with every figure loaded and one claims row per claim, and the
claims are measured from the stored trials."""

import json
import shutil
import sqlite3

import pytest
from browser import images, needs_chromium, open_page, page_errors

from reglab.lab.study import make_plan, rebuild_report, run_study
from reglab.lab.study.chapters import STUDIES
from reglab.lab.study.claims import VERDICTS
from reglab.lab.study.storage import StudyStore, sqlite_url

pytestmark = pytest.mark.slow
SHORT = {"capacity": 2, "penalties": 2, "augmentation": 2, "robust-loss": 5}  # epochs


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Each built-in study run once, shortened, into its own folder."""
    root = tmp_path_factory.mktemp("chapters")
    out = {}
    for name, epochs in SHORT.items():
        spec = STUDIES[name]
        plan = make_plan(spec.base_recipe().updated({"training.epochs": epochs}), seeds=2, study=name)
        run_study(plan, root / name)
        out[name] = root / name
    return out


def _claims(folder):
    return json.loads((folder / "claims.json").read_text())


@needs_chromium
@pytest.mark.parametrize("name", list(SHORT))
def test_each_study_report_opens_with_its_figures_and_one_row_per_claim(studies, chromium_module, name, request):
    tools = open_page(chromium_module, studies[name] / "report.html")
    request.addfinalizer(tools.ws.close)
    shown = images(tools)
    rows = tools.evaluate(
        "[...document.querySelectorAll('#claims tbody tr')].map(r => [r.dataset.claim, r.cells[3].innerText])"
    )
    heading = tools.evaluate("document.querySelector('h2').innerText")
    errors = page_errors(tools)
    spec = STUDIES[name]
    assert heading == "What the course says — what this data shows", "the report opens with the claims"
    assert [claim_id for claim_id, _ in rows] == [c.id for c in spec.claims]
    assert all(verdict in VERDICTS for _, verdict in rows), rows
    assert [[c["id"], c["verdict"]] for c in _claims(studies[name])] == rows, "claims.json holds the table's verdicts"
    assert len(shown) >= 4 and all(complete and w > 0 and h > 0 for _, complete, w, h in shown), shown
    assert errors == []


def test_penalties_sgd_l2_and_weight_decay_train_identically_adam_l2_and_adamw_do_not(studies):
    results = json.loads((studies["penalties"] / "results.json").read_text())
    history = {(r["arm"], r["seed"]): r["history"] for r in results}
    for seed in (0, 1):
        a, b = history[("sgd-l2", seed)], history[("sgd-decay", seed)]
        same = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in ("train_loss", "valid_loss"))
        assert same <= 1e-5, f"seed {seed}: SGD + L2 penalty and SGD + weight decay differ by {same}"
        c, d = history[("l2", seed)], history[("adamw", seed)]
        apart = max(abs(x[k] - y[k]) for x, y in zip(c, d) for k in ("train_loss", "valid_loss"))
        assert apart > 1e-3, f"seed {seed}: Adam + coupled L2 and AdamW agree to {apart}"
    claims = {c["id"]: c for c in _claims(studies["penalties"])}
    same = claims["l2-is-weight-decay-for-sgd"]
    assert same["verdict"] == "holds", same
    assert same["numbers"]["difference"]["weights"] <= 1e-3, "the final weights agree to float32 rounding"
    assert claims["adam-l2-differs-from-adamw"]["verdict"] == "holds"


def test_capacity_claims_are_measured_from_the_stored_trials(studies, tmp_path):
    """Changing one stored trial changes the measurement in the rebuilt report."""
    copy = tmp_path / "capacity"
    shutil.copytree(studies["capacity"], copy)
    before = {c["id"]: c for c in _claims(copy)}["bigger-overfits-more"]["numbers"]
    trial = StudyStore(sqlite_url(copy), "capacity").completed()[("width-1024", 0)]
    with sqlite3.connect(copy / "study.db") as db:  # the largest model's seed 0: its gap made the smallest of all
        trial_id = trial._trial_id
        (text,) = db.execute(
            "SELECT value_json FROM trial_user_attributes WHERE trial_id = ? AND key = 'summary'", (trial_id,)
        ).fetchone()
        summary = json.loads(text)
        summary["diagnosis"]["gap_at_end"] = -100.0
        db.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE trial_id = ? AND key = 'summary'",
            (json.dumps(summary), trial_id),
        )
    rebuild_report(copy)
    after = {c["id"]: c for c in _claims(copy)}["bigger-overfits-more"]["numbers"]
    assert after["n"] == before["n"]
    assert after["rho"] < before["rho"], (before, after)
