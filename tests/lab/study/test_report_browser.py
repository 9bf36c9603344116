"""The report opens in headless Chromium: every figure loads, every arm is listed, no errors."""

import pytest
from browser import images, needs_chromium, open_page, page_errors
from study_helpers import planned, tiny_base

from reglab.lab.study import make_plan, run_study

pytestmark = needs_chromium


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.slow
def test_report_opens_in_headless_chromium_with_every_figure_and_arm(signals, tmp_path, chromium, task, request):
    arms = ["baseline", "early-stopping", "l1-proximal", "l2", "dropout", "combination"]
    base = (
        tiny_base(signals)
        if task == "classification"
        else tiny_base(signals).updated({"data.name": "diabetes", "training.loss": "mse"})
    )
    run_study(make_plan(base, arms=arms, seeds=2), tmp_path / "study")
    tools = open_page(chromium, tmp_path / "study" / "report.html")
    request.addfinalizer(tools.ws.close)
    shown = images(tools)
    listed = tools.evaluate("[...document.querySelectorAll('#leaderboard tbody tr')].map(r => r.dataset.arm)")
    errors = page_errors(tools)
    figures = ["train vs validation loss per arm", "validation loss of all arms", "first-layer weight histograms"]
    assert [alt for alt, *_ in shown] == [
        *figures,
        "test accuracy per arm" if task == "classification" else "test loss per arm",
    ]
    assert all(complete and w > 0 and h > 0 for _, complete, w, h in shown), shown
    from reglab.lab.study.storage import StudyStore, sqlite_url

    assert sorted(listed) == sorted(planned(StudyStore(sqlite_url(tmp_path / "study"), "regularization"), arms))
    assert errors == []
