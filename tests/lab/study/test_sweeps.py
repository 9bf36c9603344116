"""Sweeps: arms generated from a recipe key's values, in study files and built-in studies."""

import pytest
from optuna.trial import TrialState
from study_helpers import held_cli, kill_when, run_cli

from reglab.lab.study import load_study_file, make_plan
from reglab.lab.study.arms import sweep_arms
from reglab.lab.study.chapters import STUDIES
from reglab.lab.study.storage import StudyStore, key_of, sqlite_url


def test_a_study_file_sweep_gives_one_arm_per_value_over_the_base(signals, tmp_path):
    (tmp_path / "sweep.toml").write_text(
        f'name = "widths"\nseeds = 2\n[base.data]\nname = "npz"\npath = "{signals}"\n'
        '[sweep]\n"model.width" = [8, 32, 128]\n"optimizer.lr" = [0.01, 0.001]\n'
    )
    plan = make_plan(**load_study_file(tmp_path / "sweep.toml"))
    assert plan.arm_names == ["baseline", "width-8", "width-32", "width-128", "lr-0.01", "lr-0.001"]
    assert plan.arm("width-32").changes == {"model.width": 32}
    assert plan.recipe("width-32", 1).model.width == 32 and plan.recipe("width-32", 1).training.seed == 1
    assert plan.recipe("lr-0.001", 0).optimizer.lr == 0.001 and plan.recipe("lr-0.001", 0).model.width == 0
    assert plan.sweeps == {"model.width": [8, 32, 128], "optimizer.lr": [0.01, 0.001]}
    assert not plan.combination, "a sweep is a curve, not an ablation: no combination"
    subset = ["width-8", "width-128", "lr-0.01"]
    assert make_plan(**{**load_study_file(tmp_path / "sweep.toml"), "arms": subset}).arm_names == subset


def test_sweep_arm_names_and_bad_sweeps():
    arms = sweep_arms(
        {"model.width": [8, 16], "data.train_size": [200], "augment.flip": [0.5], "model.norm": ["batch"]}
    )
    assert list(arms) == ["width-8", "width-16", "train-size-200", "flip-0.5", "norm-batch"]
    clash = sweep_arms({"model.dropout": [0.1], "augment.p": [0.5], "mixing.prob": [1.0]})
    assert list(clash) == ["dropout-0.1", "p-0.5", "prob-1"]
    both = sweep_arms({"schedule.patience": [3], "early_stopping.patience": [5]})
    assert list(both) == ["schedule-patience-3", "early-stopping-patience-5"], "a shared last part: the whole key"
    for bad, words in [
        ({"model.width": 8}, "must be a list of values"),
        ({"model.width": []}, "is empty"),
        ({"model.width": [8, 8]}, "repeats a value"),
        ({"model.widht": [8]}, "no recipe field is called 'model.widht'"),
        ({"model.activation": ["re lu"]}, "cannot name an arm"),
        ({"augment.erase_area": [[0.1, 0.2]]}, "a value must be a number"),
    ]:
        with pytest.raises((ValueError, TypeError), match=words):
            sweep_arms(bad)
    with pytest.raises(ValueError, match="the value -8 is refused: model.width"):
        make_plan(sweeps={"model.width": [8, -8]}, seeds=1)
    with pytest.raises(ValueError, match="'width-8' is defined twice"):
        make_plan(sweeps={"model.width": [8]}, overrides={"width-8": {"model.dropout": 0.1}}, seeds=1)


def test_the_built_in_studies_build_and_their_sweeps_are_their_arms():
    capacity = make_plan(study="capacity")
    assert capacity.arm_names[:3] == ["width-8", "width-16", "width-32"] and "depth-0" in capacity.arm_names
    assert capacity.arm("train-size-200").recipe.data.train_size == 200
    assert len(capacity.arm_names) * len(capacity.seeds) == STUDIES["capacity"].points()
    augmentation = make_plan(study="augmentation")
    assert augmentation.versus("1d-mixup") == "1d-baseline" and augmentation.versus("mixup") == "baseline"
    assert augmentation.arm("1d-shift").recipe.data.name == "mnist1d" and augmentation.base.data.name == "digits"
    fashion = make_plan(augmentation.base.updated({"data.name": "fashion-mnist"}), study="augmentation")
    assert fashion.arm("1d-shift").recipe.data.name == "mnist1d", "the signal arms stay on MNIST-1D"
    assert make_plan(study="penalties", arms=["sgd-decay", "baseline"]).versus("sgd-decay") == "baseline", (
        "a reference left out of the run: compared with the baseline"
    )
    with pytest.raises(ValueError, match="unknown study 'capcity'; the built-in studies: regularization, capacity"):
        make_plan(study="capcity")


def _done(url, name):
    try:
        return len(StudyStore(url, name).trials([TrialState.COMPLETE]))
    except Exception:  # the storage is being created
        return 0


@pytest.mark.slow
def test_a_killed_sweep_study_resumes_running_only_what_is_missing(signals, tmp_path):
    """Killed while its third stack group is held (``held_cli.py``), two groups' trials stored."""
    (tmp_path / "sweep.toml").write_text('name = "widths"\nseeds = 2\n[sweep]\n"model.width" = [4, 8, 16]\n')
    args = ["study", "--config", tmp_path / "sweep.toml", "--dataset", signals, "--epochs", 10,
            "--set", "data.batch_size=32", "--quiet"]  # fmt: skip
    out = tmp_path / "out"
    url = sqlite_url(out)
    proc = held_cli([*args, "--out", out], "after:2")
    kill_when(proc, lambda: _done(url, "widths") >= 4, "two groups stored")
    store = StudyStore(url, "widths")
    first = {key_of(t): t.number for t in store.trials([TrialState.COMPLETE])}
    assert 3 <= len(first) < 8, "killed part-way"
    resumed = run_cli(*args, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    complete = store.trials([TrialState.COMPLETE])
    keys = [key_of(t) for t in complete]
    expected = {(a, s) for a in ["baseline", "width-4", "width-8", "width-16"] for s in (0, 1)}
    assert sorted(keys) == sorted(expected), "each point once"
    assert {key_of(t): t.number for t in complete if key_of(t) in first} == first, "finished trials were not re-run"
    assert "Sweep of model.width" in (out / "report.html").read_text()
