"""``reglab tune``: the search space and its checks, the search (Optuna, pruning, budget, workers,
resume), the confirmation on fresh seeds, best.toml and the report."""

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from browser import images, needs_chromium, open_page, page_errors
from optuna.trial import FixedTrial, TrialState

from reglab.lab.cli import main
from reglab.lab.recipe import Recipe
from reglab.lab.study.storage import StorageError
from reglab.lab.tune import make_space, run_tune
from reglab.lab.tune.search import open_search, run_search
from reglab.lab.tune.space import TECHNIQUES, use_key


def tiny(signals, epochs=6):
    return Recipe().updated({"data.name": "npz", "data.path": str(signals), "data.batch_size": 32,
                             "model.width": 16, "training.epochs": epochs})  # fmt: skip


def _finished(study):
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _finished_in(db: Path, name: str) -> int:
    """Finished trials of study ``name`` in the SQLite file, read with one query: polling through
    ``optuna.load_study`` took long enough on a loaded machine for a whole search to end unseen."""
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=0.1)) as con:
            (count,) = con.execute(
                "SELECT COUNT(*) FROM trials JOIN studies ON trials.study_id = studies.study_id "
                "WHERE studies.study_name = ? AND trials.state IN ('COMPLETE', 'PRUNED')",
                (name,),
            ).fetchone()
    except sqlite3.OperationalError:  # not created yet, or being written
        return 0
    return count


def test_a_trial_samples_every_range_and_applies_the_techniques_switched_on():
    space = make_space(Recipe(), ["shift", "dropout", "early-stopping"])
    params = {use_key("shift"): True, "augment.shift": 3, use_key("dropout"): False, "model.dropout": 0.4,
              use_key("early-stopping"): True, "early_stopping.patience": 12}  # fmt: skip
    changes = space.suggest(FixedTrial(params))
    assert changes == {"augment.shift": 3, "early_stopping.enabled": True, "early_stopping.patience": 12}
    assert space.changes_of(params) == changes, "a finished trial's params give back its changes"
    assert space.grid()["augment.shift"] == [1, 4, 8] and space.grid()[use_key("dropout")] == [True, False]
    wide = make_space(Recipe(), ["dropout"], {"model.dropout": {"low": 0.0, "high": 0.3}, "optimizer.lr":
                                               {"low": 1e-4, "high": 1e-2, "log": True}})  # fmt: skip
    assert wide.dims[0].high == 0.3 and wide.extra[0].key == "optimizer.lr" and wide.extra[0].log
    assert make_space(Recipe(), [], {"model.norm": {"choices": ["none", "batch"]}}).extra[0].choices == (
        "none",
        "batch",
    )
    assert make_space(Recipe(), [], {"model.width": {"low": 16, "high": 512}}).extra[0].integer, "an int field"
    assert list(TECHNIQUES) == [t.name for t in make_space(Recipe()).techniques], "the default: every technique"


@pytest.mark.parametrize(
    "ranges, words",
    [
        ({"model.widht": {"low": 1, "high": 2}}, "space 'model.widht': no recipe field is called 'model.widht'"),
        ({"model.dropout": {"low": 0.5, "high": 0.5}}, "the range [0.5, 0.5] is empty or inverted"),
        ({"model.dropout": {"low": 0.6, "high": 0.1}}, "the range [0.6, 0.1] is empty or inverted"),
        ({"optimizer.lr": {"low": 0.0, "high": 0.1, "log": True}}, "a log range must stay above 0"),
        ({"model.dropout": {"low": 0.1, "high": 1.5}}, "the value 1.5 is refused: model.dropout"),
        ({"model.norm": {"choices": ["none", "sparkle"]}}, "the value 'sparkle' is refused: model.norm"),
        ({"model.dropout": {"low": 0.1}}, "needs low and high"),
        ({"model.dropout": {"low": 0.1, "high": 0.2, "step": 1}}, "unknown key 'step'"),
        ({"model.dropout": 0.3}, "must be a table"),
    ],
)
def test_a_bad_space_is_refused_naming_the_field(ranges, words):
    with pytest.raises((ValueError, TypeError)) as e:
        make_space(Recipe(), ["dropout"], ranges)
    assert words in str(e.value)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--sampler", "annealing"], "unknown sampler 'annealing'; known: tpe, random, cmaes, grid"),
        (["--pruner", "hyperband"], "unknown pruner 'hyperband'; known: median, halving, none"),
        (["--trials", "0"], "--trials must be >= 1, got 0"),
        (["--techniques", "shift,dropuot"], "unknown technique 'dropuot'"),
        (["--confirm-seeds", "1"], "--confirm-seeds must be at least 2"),
        (["--against", "combination"], "--against must be one of the default study's single arms"),
    ],
)
def test_bad_tune_input_is_one_line_exit_2_and_touches_nothing(tmp_path, capsys, args, words):
    out = tmp_path / "out"
    assert main(["tune", "--epochs", "2", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reglab: error:") and words in err[0], err
    assert not out.exists()


def test_a_storage_holding_another_space_under_the_name_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    open_search(url, "s", Recipe(), make_space(Recipe(), ["dropout"]), "tpe", "none")
    with pytest.raises(StorageError, match="holds a search named 's' over another space"):
        open_search(url, "s", Recipe(), make_space(Recipe(), ["shift"]), "tpe", "none")
    with pytest.raises(StorageError, match="over another base recipe"):
        open_search(url, "s", Recipe().updated({"model.width": 8}), make_space(Recipe(), ["dropout"]), "tpe", "none")


@pytest.mark.slow
def test_the_search_never_evaluates_the_test_set(signals, tmp_path, monkeypatch):
    from reglab.train.loop import Trainer

    evaluate, predict = Trainer.evaluate, Trainer.predict

    def guarded(original):
        def call(self, x, *rest):
            assert x is not self.data.x_test, "the search evaluated the test set"
            return original(self, x, *rest)

        return call

    monkeypatch.setattr(Trainer, "evaluate", guarded(evaluate))
    monkeypatch.setattr(Trainer, "predict", guarded(predict))
    study = run_search(f"sqlite:///{tmp_path / 't.db'}", "t", tiny(signals), make_space(Recipe(), ["dropout", "l2"]),
                       trials=3, timeout=None, workers=1, threads=1, sampler="random", pruner="none")  # fmt: skip
    assert len(_finished(study)) == 3 and all(t.value is not None for t in _finished(study))


@pytest.mark.slow
def test_pruning_happens_with_a_pruner_and_never_without(signals, tmp_path):
    space = make_space(Recipe(), ["dropout", "input-noise", "mixup"])
    counts = {}
    for pruner in ("median", "none"):
        study = run_search(f"sqlite:///{tmp_path / (pruner + '.db')}", pruner, tiny(signals, epochs=10), space,
                           trials=9, timeout=None, workers=1, threads=1, sampler="random", pruner=pruner)  # fmt: skip
        counts[pruner] = len(study.get_trials(states=(TrialState.PRUNED,)))
        assert len(_finished(study)) == 9
    assert counts["median"] > 0 and counts["none"] == 0, counts


@pytest.mark.slow
def test_two_workers_on_one_sqlite_search_run_exactly_n_trials_readable_with_plain_optuna(signals, tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    run_search(url, "two", tiny(signals), make_space(Recipe(), ["dropout", "shift"]), trials=7, timeout=None,
               workers=2, threads=1, sampler="tpe", pruner="median")  # fmt: skip
    study = optuna.load_study(study_name="two", storage=url)
    done = _finished(study)
    assert len(done) == 7 and len({t.number for t in done}) == 7
    frame = study.trials_dataframe()
    assert {"params_model.dropout", "params_use.shift", "value_validation loss", "state"} <= set(frame.columns)
    assert all(t.intermediate_values for t in done), "each trial reported its epochs"
    assert all(t.distributions and set(t.params) == set(done[0].params) for t in done)


@pytest.mark.slow
def test_a_killed_search_resumes_and_ends_with_n_finished_trials(signals, tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "reglab.lab.cli", "tune", "--dataset", str(signals), "--set", "data.batch_size=32",
            "--width", "16", "--epochs", "12", "--techniques", "dropout,shift", "--trials", "8", "--workers", "2",
            "--confirm-seeds", "2", "--pruner", "none", "--quiet", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"sqlite:///{out / 'tune.db'}"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and _finished_in(out / "tune.db", "tune") < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # the killed workers die with their parent
    before = len(_finished(optuna.load_study(study_name="tune", storage=url)))
    assert 3 <= before < 8, before
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="tune", storage=url)
    assert len(_finished(study)) == 8
    assert not study.get_trials(states=(TrialState.RUNNING,)), "no trial left running"
    assert (out / "best.toml").exists() and (out / "report.html").exists()


@pytest.mark.slow
@needs_chromium
def test_a_short_search_writes_best_toml_the_confirmation_and_a_report(signals, tmp_path, chromium, request):
    base = tiny(signals)
    result = run_tune(base, make_space(base, ["dropout", "shift", "l2"]), tmp_path / "t", trials=5,
                      confirm_seeds=(100, 101), sampler="random")  # fmt: skip
    best = Recipe.load(tmp_path / "t" / "best.toml")
    assert best == base.updated(result["best_changes"])
    assert [e["arm"] for e in result["confirmation"]] == sorted(
        ["baseline", "shift", "tuned"], key=lambda a: next(e["test_loss"] for e in result["confirmation"]
                                                           if e["arm"] == a))  # fmt: skip
    assert all(e["seeds"] == 2 for e in result["confirmation"])
    rows = json.loads((tmp_path / "t" / "confirm" / "results.json").read_text())
    assert sorted({r["seed"] for r in rows}) == [100, 101], "fresh seeds, none of the search's"
    assert result["tuned_vs_against"]["versus"] == "shift" and result["trials"]["complete"] >= 1
    tools = open_page(chromium, tmp_path / "t" / "report.html")
    request.addfinalizer(tools.ws.close)
    shown = images(tools)
    arms = tools.evaluate("[...document.querySelectorAll('#confirmation tbody tr')].map(r => r.dataset.arm)")
    errors = page_errors(tools)
    assert [alt for alt, *_ in shown] == ["validation loss per trial", "parameter importances", "slice plots"]
    assert all(complete and w > 0 and h > 0 for _, complete, w, h in shown), shown
    assert sorted(arms) == ["baseline", "shift", "tuned"] and errors == []
