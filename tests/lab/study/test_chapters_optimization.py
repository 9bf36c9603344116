"""The optimization chapters' studies (optimizers, batch-size, gradients, normalization),
shortened (one seed, a few epochs, small training sets): each runs, its report opens in headless
Chromium with every figure loaded and one claims row per claim, and its figures show the stored
trials' numbers."""

import numpy as np
import pytest
from browser import images, needs_chromium, open_page, page_errors

from reglab.lab.study import make_plan, run_study, surfaces
from reglab.lab.study.chapters import STUDIES, batch_size, gradients, normalization, optimizers
from reglab.lab.study.claims import VERDICTS, Evidence
from reglab.lab.study.report import collect
from reglab.lab.study.storage import StudyStore, sqlite_url

pytestmark = pytest.mark.slow
SHORT = {  # recipe changes that shorten each study
    "optimizers": {"training.epochs": 11, "data.train_size": 200},  # 11: the step schedule decays at epoch 10
    "batch-size": {"training.epochs": 3, "data.train_size": 200},
    "gradients": {"training.epochs": 2, "data.train_size": 200},
    "normalization": {"training.epochs": 1, "data.train_size": 200},
}


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("optimization")
    saved = surfaces.STEPS
    surfaces.STEPS = 25  # the trajectories' figure: short paths (the claim's equations are tested elsewhere)
    try:
        out = {}
        for name, changes in SHORT.items():
            plan = make_plan(STUDIES[name].base_recipe().updated(changes), seeds=1, study=name)
            run_study(plan, root / name)
            out[name] = root / name
        yield out
    finally:
        surfaces.STEPS = saved


def _evidence(folder):
    plan, rows, _ = collect(StudyStore(sqlite_url(folder), folder.name))
    return Evidence(plan, rows, folder)


@needs_chromium
@pytest.mark.parametrize("name", list(SHORT))
def test_each_report_opens_with_its_figures_and_one_row_per_claim(studies, chromium_module, name, request):
    tools = open_page(chromium_module, studies[name] / "report.html")
    request.addfinalizer(tools.ws.close)
    shown = images(tools)
    rows = tools.evaluate(
        "[...document.querySelectorAll('#claims tbody tr')].map(r => [r.dataset.claim, r.cells[3].innerText])"
    )
    headings = tools.evaluate("[...document.querySelectorAll('h2')].map(h => h.innerText)")
    errors = page_errors(tools)
    assert [claim_id for claim_id, _ in rows] == [c.id for c in STUDIES[name].claims]
    assert all(verdict in VERDICTS for _, verdict in rows), rows
    assert len(shown) >= 5 and all(complete and w > 0 and h > 0 for _, complete, w, h in shown), shown
    assert errors == []
    own = {"optimizers": "Trajectories on three test functions", "batch-size": "The loss between a small-batch and a "
           "large-batch minimum", "gradients": "Gradient norm per layer", "normalization": "Each norm against the "
           "batch size"}  # fmt: skip
    assert own[name] in headings


def test_optimizers_figures_show_each_optimizer_at_its_lr_chosen_on_validation(studies):
    ev = _evidence(studies["optimizers"])
    grid = optimizers.grid_panel(ev)
    assert set(grid.lines) == set(optimizers.GRID)
    for key, (xs, ys) in grid.lines.items():
        assert xs == sorted(optimizers.GRID[key][2])
        best = optimizers._best(ev, key)
        lr = ev.groups[best][0]["recipe"]["optimizer"]["lr"]
        assert ys[xs.index(lr)] == min(ys), "the arm used is the grid's lowest best validation loss"
    train_vs_steps = optimizers.loss_panels(ev)[0]
    gd = next(label for label in train_vs_steps.lines if label.startswith("gd "))
    xs, ys = train_vs_steps.lines[gd]
    assert xs == [float(e) for e in range(1, 12)]  # full batch: one step an epoch
    row = ev.groups[optimizers._best(ev, "gd")][0]
    assert ys == [r["train_loss"] for r in row["history"]]
    steps = optimizers.step_panel(ev).lines
    assert all(all(v > 0 for v in ys) for _, ys in steps.values()) and len(steps) == len(optimizers.GRID)
    lrs = optimizers.schedule_panels(ev)[0].lines
    assert lrs["constant"][1] == [1e-3] * 11
    assert lrs["step"][1][9] == pytest.approx(1e-3) and lrs["step"][1][10] == pytest.approx(1e-4)  # × 0.1 at epoch 11


def test_batch_size_interpolation_ends_at_the_two_minima(studies):
    ev = _evidence(studies["batch-size"])
    line = batch_size.interpolation(ev, np.array([0.0, 0.5, 1.0]))
    assert (line["small"], line["large"]) == ("batch-size-10", "batch-size-1000")
    small, large = ev.groups["batch-size-10"][0], ev.groups["batch-size-1000"][0]
    assert line["train"][0] == pytest.approx(small["history"][-1]["train_loss"], rel=0.3)  # the final weights
    assert line["test"][0] == pytest.approx(small["test_loss"], rel=1e-5)
    assert line["test"][2] == pytest.approx(large["test_loss"], rel=1e-5)
    panels = batch_size.measure_panels(ev)
    xs, ys = panels[2].lines["mean ± std"]
    assert xs == batch_size.SIZES and ys == [r["summary"]["sharpness"] for a in batch_size.arms()
                                             for r in ev.groups[a]]  # fmt: skip


def test_gradients_heatmap_holds_the_recorded_norms(studies):
    ev = _evidence(studies["gradients"])
    rows, first = gradients.gradient_grid(ev, 0)
    assert rows[:16] == gradients.mlp_arms() and first.shape == (18, gradients.DEPTH + 1)
    record = ev.groups["sigmoid-xavier"][0]["history"][0]
    assert list(first[0]) == [record[f"grad_norm_{j}"] for j in range(1, 10)]
    assert first[0, 0] < first[0, -1] / 100  # sigmoid: the input layer's gradient has faded
    steps = gradients.rnn_panel(ev).lines
    assert len(steps) == 3 and all(len(xs) == 2 * 2 for xs, _ in steps.values())  # 2 epochs of 2 steps


def test_normalization_panels_show_each_norm_and_both_statistics(studies):
    ev = _evidence(studies["normalization"])
    lines = normalization.batch_panel(ev).lines
    assert set(lines) == {f"{n} norm" for n in normalization.NORMS}
    assert all(xs == list(normalization.BATCHES) for xs, _ in lines.values())
    stats = normalization.statistics_panel(ev).lines
    running, batch = stats["running statistics (eval mode)"][1], stats["batch statistics (train mode)"][1]
    assert running == [ev.groups[f"batch-batch-{b}"][0]["test_acc"] for b in normalization.BATCHES]
    assert batch == [ev.groups[f"batch-batch-{b}"][0]["summary"]["test_acc_batch_stats"] for b in normalization.BATCHES]
