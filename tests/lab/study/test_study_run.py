"""Running studies: every grid point once, resume after SIGKILL, shared storages."""

import csv
import json
import math
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from study_helpers import held_cli, holding, kill_when, planned, run_cli, tiny_base

from reglab.lab.recipe import Recipe
from reglab.lab.study import make_plan, print_leaderboard, rebuild_report, run_study
from reglab.lab.study.storage import StudyStore, key_of, sqlite_url
from reglab.lab.study.workers import thread_share
from reglab.matmul import auto_kernel

ARMS = ["baseline", "dropout", "l1-proximal", "shift", "combination"]


def _counts(url, name="regularization"):
    store = StudyStore(url, name)
    return Counter(key_of(t) for t in store.trials([TrialState.COMPLETE])), store


@pytest.mark.slow
def test_study_runs_every_point_once_writes_the_report_and_resumes_nothing(signals, tmp_path):
    plan = make_plan(tiny_base(signals), arms=ARMS, seeds=2)
    board = run_study(plan, tmp_path)
    counts, store = _counts(sqlite_url(tmp_path))
    arms = planned(store, ARMS)
    assert counts == Counter({(a, s): 1 for a in arms for s in (0, 1)})
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert sorted((r["arm"], int(r["seed"])) for r in rows) == sorted(counts)
    assert {e["arm"] for e in board} == set(arms)
    combo = store.attrs()["combination"]
    assert set(combo["arms"]) <= set(ARMS) - {"baseline", "combination"}
    if combo["arms"]:
        combo_recipe = json.loads(next(r["recipe"] for r in rows if r["arm"] == "combination"))
        assert combo_recipe["model"]["dropout"] == (0.3 if "dropout" in combo["arms"] else 0.0)
    else:
        assert "nothing to combine" in (tmp_path / "report.html").read_text()

    trials_before = len(store.trials())
    assert run_study(plan, tmp_path) == board, "a finished study re-runs nothing and reports the same"
    assert len(store.trials()) == trials_before
    (tmp_path / "report.html").unlink()
    assert rebuild_report(tmp_path) == board and (tmp_path / "report.html").exists()


@pytest.mark.slow
def test_a_regression_study_ranks_by_test_loss_and_reports_no_accuracy(tmp_path, capsys):
    base = Recipe().updated(
        {
            "data.name": "diabetes",
            "training.loss": "mse",
            "data.batch_size": 32,
            "model.width": 32,
            "training.epochs": 30,
        }
    )
    plan = make_plan(base, arms=["baseline", "early-stopping", "dropout", "combination"], seeds=2)
    board = run_study(plan, tmp_path)
    arms = planned(_counts(sqlite_url(tmp_path))[1], plan.arm_names)
    assert [e["arm"] for e in board] == sorted(arms, key=lambda a: next(e["test_loss"] for e in board if e["arm"] == a))
    assert all(math.isnan(e["test_acc"]) for e in board)
    baseline = next(e for e in board if e["arm"] == "baseline")
    assert baseline["test_loss"] < 0.8, (
        "standardized targets: a constant prediction's MSE is ~1, the MLP must do better"
    )
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert len(rows) == 2 * len(arms) and {r["test_acc"] for r in rows} == {""}
    for e in board:  # the leaderboard's means are the trials' MSEs
        assert e["test_loss"] == pytest.approx(
            sum(float(r["test_loss"]) for r in rows if r["arm"] == e["arm"]) / 2, rel=1e-12
        )
    page = (tmp_path / "report.html").read_text()
    assert "test accuracy" not in page and "<h2>Test loss</h2>" in page and "mean squared error" in page
    print_leaderboard(board, "regression")
    table = capsys.readouterr().out
    assert "test loss" in table and "test acc" not in table and "nan" not in table


@pytest.mark.slow
def test_two_local_workers_complete_each_point_once(signals, tmp_path):
    """Each worker's first stack group waits until both have entered one (``held_cli.py``): left
    to timing, the first worker may run every group before the second has started."""
    arms = ["baseline", "mixup", "input-noise", "combination"]
    (tmp_path / "met").mkdir()
    args = ["study", "--dataset", signals, "--set", "data.batch_size=32", "--width", 16, "--epochs", 6,
            "--seeds", 3, "--arms", ",".join(arms), "--workers", 2, "--quiet", "--out", tmp_path / "out"]  # fmt: skip
    proc = held_cli(args, f"meet:{tmp_path / 'met'}:2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    counts, store = _counts(sqlite_url(tmp_path / "out"))
    assert counts == Counter({(a, s): 1 for a in planned(store, arms) for s in range(3)})
    assert not store.trials([TrialState.RUNNING, TrialState.WAITING])
    pids = {t.user_attrs["lease"]["pid"] for t in store.trials([TrialState.COMPLETE])}
    assert len(pids) == 2, "both workers ran trials"
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").read_text().splitlines()))
    assert {r["threads"] for r in rows} == {str(thread_share(2))}, (
        "each worker uses its share of the cores, recorded per trial"
    )
    assert {r["matmul"] for r in rows} == {auto_kernel()}, "the Linear layers' kernel, recorded per trial"


@pytest.mark.slow  # ~11 s: two spawned workers
def test_workers_with_several_threads_start_after_the_parent_ran_parallel_ops(signals, tmp_path):
    """Forked workers hung for good in libgomp's barrier (the parent's OpenMP thread team does
    not exist in a forked child) as soon as the parent had run a parallel op and each worker
    had more than one thread: `reglab study --workers 2` on any machine of 4 cores or more.
    Workers are spawned now; here the parent runs a 2-thread op first, then two 2-thread workers."""
    code = (
        "import sys, torch\n"
        "from reglab.lab.recipe import Recipe\n"
        "from reglab.lab.study import make_plan, run_study\n"
        "torch.set_num_threads(2)\n"
        "torch.ones(2**22).abs().sum()  # an OpenMP team of 2 threads in the parent\n"
        f"base = Recipe().updated({{'data.name': 'npz', 'data.path': {str(signals)!r}, 'model.width': 16, "
        f"'training.epochs': 2}})\n"
        "run_study(make_plan(base, arms=['baseline', 'dropout'], seeds=1), sys.argv[1], workers=2, threads=2)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()  # its workers die with it
        proc.communicate()
        pytest.fail("the study's workers did not finish in 120 s (a hang after fork?)")
    assert proc.returncode == 0, err
    counts, store = _counts(sqlite_url(tmp_path))
    assert counts == Counter({("baseline", 0): 1, ("dropout", 0): 1})
    assert {t.user_attrs["summary"]["threads"] for t in store.trials([TrialState.COMPLETE])} == {2}


def _results(folder):
    """Per trial: every metric and the per-epoch history without wall times."""
    out = {}
    for r in json.loads((folder / "results.json").read_text()):
        history = [{k: v for k, v in e.items() if k != "time"} for e in r["history"]]
        metrics = {k: r[k] for k in ("test_acc", "test_loss", "valid_loss", "best_epoch", "stopped_epoch", "zero_frac")}
        out[(r["arm"], r["seed"])] = (metrics, history, r["recipe"])
    return out


@pytest.mark.slow
def test_study_killed_three_times_resumes_to_the_uninterrupted_results(signals, tmp_path, capsys):
    args = [
        "study",
        "--dataset",
        signals,
        "--set",
        "data.batch_size=32",
        "--width",
        16,
        "--epochs",
        50,
        "--seeds",
        2,
        "--quiet",
    ]
    args += ["--arms", "baseline,dropout,l2,combination"]
    ref = run_cli(*args, "--out", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "killed"
    url = sqlite_url(out)
    # Kill points are set by progress, never by the clock (a stack group of 2 trials takes ~0.25 s
    # here: a study may end between two polls). Each process trains its first K stack groups and
    # is killed holding the next one, leased (``held_cli.py``); K is 0, 0, 1 in a random order. Of
    # the two stack groups (baseline and l2 as one model of 4 copies, offered first as the longest;
    # dropout's 2), at most one is stored before the last kill: each process has a group to hold,
    # and the combination, which waits for every other trial, is never reached.
    stored = 0
    for i, k in enumerate(random.Random(5).sample([0, 0, 1], 3)):
        mark = tmp_path / f"held-{i}"
        proc = held_cli([*args, "--out", out], f"after:{k}", mark)
        stored += 4 * k
        kill_when(proc, lambda: holding(mark) and _progressed(url, stored, running=2, pid=proc.pid),
                  f"{stored} trials stored and this process's next group of 2 held")  # fmt: skip
    partial = rebuild_report(out)  # the report of a study stopped part-way says what is missing
    finished = set(_counts(url)[0])
    arms = planned(_counts(url)[1], ["baseline", "dropout", "l2", "combination"])
    assert partial.missing == [(a, s) for a in arms for s in (0, 1) if (a, s) not in finished]
    assert partial.missing and sum(e["seeds"] for e in partial) == 8 - len(partial.missing)
    print_leaderboard(partial, "partial")
    assert "not finished yet: " in capsys.readouterr().out
    assert "Not finished yet: " in (out / "report.html").read_text()
    resumed = run_cli(*args, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert rebuild_report(out).missing == [] and "Not finished yet" not in (out / "report.html").read_text()

    counts, store = _counts(url)
    expected = {(a, s) for a in planned(store, ["baseline", "dropout", "l2", "combination"]) for s in (0, 1)}
    assert set(counts.values()) == {1} and set(counts) == expected, "no duplicate and no lost trial"
    died = [t for t in store.trials([TrialState.FAIL]) if t.user_attrs.get("failure", "").startswith("worker died")]
    assert died, "killed trials were detected and run again"
    assert _results(out) == _results(tmp_path / "ref")


@pytest.mark.slow
def test_two_processes_on_one_sqlite_study_complete_each_point_once(signals, tmp_path):
    url = sqlite_url(tmp_path / "shared")
    (tmp_path / "shared").mkdir()
    args = [
        "study",
        "--dataset",
        signals,
        "--width",
        16,
        "--epochs",
        4,
        "--seeds",
        3,
        "--arms",
        "baseline,dropout,mixup",
        "--storage",
        url,
        "--quiet",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reglab.lab.cli", *map(str, args), "--out", str(tmp_path / f"w{i}")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    counts, store = _counts(url)
    assert counts == Counter({(a, s): 1 for a in ("baseline", "dropout", "mixup") for s in range(3)})
    assert not store.trials([TrialState.RUNNING, TrialState.WAITING])


@pytest.mark.slow
def test_killing_the_parent_of_local_workers_kills_them_and_the_rerun_completes(signals, tmp_path):
    """The parent is killed while both workers are inside a stack group, every trial leased: the
    workers are held there (``held_cli.py``), so that the kill cannot miss them, as a real group
    of a few seconds could under load. The rerun, the plain CLI, trains everything."""
    args = ["study", "--dataset", signals, "--width", 16, "--epochs", 5, "--seeds", 3,
            "--arms", "baseline,dropout", "--workers", 2, "--quiet", "--out", tmp_path]  # fmt: skip
    proc = held_cli(args, "forever")
    url = sqlite_url(tmp_path)
    running, store = [], None
    workers = lambda: {t.user_attrs["lease"]["pid"] for t in running if "lease" in t.user_attrs}  # noqa: E731

    def held() -> bool:  # both workers hold a stack group of 3 leased trials
        nonlocal running, store
        if store is None and (tmp_path / "study.db").exists():
            try:
                store = StudyStore(url, "regularization")  # opened once: an opening takes ~0.5 s
            except Exception:  # noqa: BLE001 - the study is being created
                return False
        running = store.trials([TrialState.RUNNING]) if store is not None else []
        return len(workers()) == 2 and len(running) == 6 and all("lease" in t.user_attrs for t in running)

    kill_when(proc, held, "both workers hold a stack group of 3 leased trials")
    pids = workers()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "the workers died with their parent"

    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    counts, store = _counts(url)
    assert counts == Counter({(a, s): 1 for a in ("baseline", "dropout") for s in range(3)})
    died = {
        t.user_attrs["lease"]["pid"]
        for t in store.trials([TrialState.FAIL])
        if t.user_attrs["failure"].startswith("worker died")
    }
    assert died == pids


def _progressed(url: str, done: int, running: int = 1, pid: int | None = None) -> bool:
    """Whether the study at ``url`` has ``done`` complete trials or more and ``running`` or
    more running, leased by process ``pid`` where one is given (a killed process's trials stay
    RUNNING until the next one reaps them). Never the first to open the file: the study command
    creates it."""
    if not Path(url.removeprefix("sqlite:///")).exists():
        return False
    try:
        trials = StudyStore(url, "regularization").trials([TrialState.COMPLETE, TrialState.RUNNING])
    except Exception:  # noqa: BLE001 - the study is not created yet, or is being created
        return False
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    mine = [t for t in trials if t.state == TrialState.RUNNING
            and (pid is None or t.user_attrs.get("lease", {}).get("pid") == pid)]  # fmt: skip
    return complete >= done and len(mine) >= running


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited


@pytest.mark.slow
def test_a_study_stored_by_an_older_version_attaches_and_a_changed_one_does_not(signals, tmp_path):
    from reglab.lab.study.runner import attach
    from reglab.lab.study.storage import StorageError

    plan = make_plan(tiny_base(signals), arms=["baseline", "dropout"], seeds=2)
    url = sqlite_url(tmp_path)
    old = plan.to_dict()
    for field in ("loss", "grad_norms", "sharpness"):  # recipe fields added after the study was stored
        del old["base"]["training"][field]
    StudyStore(url, plan.name).set_attr("plan", old)
    attach(plan, url)  # their defaults are what the stored trials ran: the same plan
    changed = make_plan(tiny_base(signals).updated({"training.epochs": 9}), arms=["baseline", "dropout"], seeds=2)
    with pytest.raises(StorageError, match=r"started with another plan \(base training.epochs: \d+ -> 9\); resume it"):
        attach(changed, url)
    with pytest.raises(
        StorageError, match=r"another plan \(arms: baseline, dropout -> baseline, l2; seeds: 0, 1 -> 0, 1, 2\)"
    ):
        attach(make_plan(tiny_base(signals), arms=["baseline", "l2"], seeds=3), url)
    with pytest.raises(
        StorageError, match=r"another plan \(arm dropout: \{'model.dropout': [\d.]+\} -> \{'model.dropout': 0.1\}\)"
    ):
        attach(
            make_plan(
                tiny_base(signals), arms=["baseline", "dropout"], seeds=2, overrides={"dropout": {"model.dropout": 0.1}}
            ),
            url,
        )
    unknown = dict(old, base={**old["base"], "training": {**old["base"]["training"], "warp": 1}})
    StudyStore(url, "other").set_attr("plan", unknown)
    with pytest.raises(StorageError, match="started with another plan"):
        attach(make_plan(tiny_base(signals), arms=["baseline", "dropout"], seeds=2, name="other"), url)


@pytest.mark.slow
def test_no_more_local_processes_start_than_trials_are_missing(signals, tmp_path, monkeypatch):
    """`--workers 100` forked 100 processes, most of them polling the storage while a few
    trained (the default study at one epoch took 83 s, against 15 s with 2 workers); now at most
    one process per missing trial starts, each still with the thread share of the workers asked
    for (the threads a trial runs with, hence its numbers, do not depend on how much is left)."""
    import reglab.lab.study as study

    started = []
    real = study.run_workers
    monkeypatch.setattr(
        study,
        "run_workers",
        lambda plan, store, out, workers, threads, **kw: (
            started.append((workers, threads)),
            real(plan, store, out, workers, threads, **kw),
        ),
    )
    plan = make_plan(tiny_base(signals, epochs=2), arms=["baseline", "dropout"], seeds=2)
    run_study(plan, tmp_path, workers=8, threads=1)
    assert started == [(4, 1)]
    counts, _ = _counts(sqlite_url(tmp_path))
    assert counts == Counter({(a, s): 1 for a in plan.arm_names for s in range(2)})
    run_study(plan, tmp_path, workers=8, threads=1)
    assert started == [(4, 1)], "a finished study starts no process"


@pytest.mark.slow
def test_a_diverging_arm_is_reported_as_diverged_and_the_study_completes(signals, tmp_path, capsys):
    """An arm whose loss becomes NaN (here a learning rate far too high) is a result of the
    ablation, not a crash: it ended the study with "cannot diagnose", and a resume failed the
    same way. Now its trials complete, it ranks last with the verdict "diverged", the
    combination leaves it out, and the report and CSV are written."""
    base = tiny_base(signals, epochs=4).updated({"optimizer.name": "sgd", "optimizer.lr": 0.1})
    plan = make_plan(
        base, arms=["baseline", "dropout", "hot", "combination"], seeds=2, overrides={"hot": {"optimizer.lr": 1e9}}
    )
    board = run_study(plan, tmp_path)
    hot = next(e for e in board if e["arm"] == "hot")
    assert board[-1] is hot and hot["verdict"] == "diverged" and math.isnan(hot["test_loss"])
    counts, store = _counts(sqlite_url(tmp_path))
    assert counts == Counter({(a, s): 1 for a in planned(store, plan.arm_names) for s in range(2)})
    assert "hot" not in store.attrs()["combination"]["arms"]
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert {r["verdict"] for r in rows if r["arm"] == "hot"} == {"diverged"}
    page = (tmp_path / "report.html").read_text()
    assert "Diverged: hot" in page
    print_leaderboard(board, "diverging")
    assert "diverged" in capsys.readouterr().out


def test_the_combination_runs_the_merged_changes_of_the_arms_that_helped(signals, tmp_path, monkeypatch):
    """Whether an arm helps depends on the data; here the derivation is fixed (dropout helped),
    so that the combination's own path is tested: derived once, run with the merged recipe,
    reported with its arms."""
    import reglab.lab.study.points as points

    derived = {"arms": ["dropout", "l2"], "skipped": [], "changes": {"model.dropout": 0.3, "regularization.l2": 1e-3}}
    monkeypatch.setattr(points, "combination_changes", lambda plan, rows: derived)
    plan = make_plan(tiny_base(signals, epochs=2), arms=["baseline", "dropout", "l2", "combination"], seeds=1)
    board = run_study(plan, tmp_path)
    assert {e["arm"] for e in board} == {"baseline", "dropout", "l2", "combination"}
    rows = json.loads((tmp_path / "results.json").read_text())
    recipe = next(r["recipe"] for r in rows if r["arm"] == "combination")
    assert recipe["model"]["dropout"] == 0.3 and recipe["regularization"]["l2"] == 1e-3
    assert "The combination of dropout, l2 reached test loss" in (tmp_path / "report.html").read_text()


@pytest.mark.slow
def test_a_stacked_study_equals_the_separate_one_and_says_which_arms_stacked(signals, tmp_path):
    arms = ["baseline", "dropout", "batch-norm", "early-stopping", "penalty", "shift", "mixup"]
    plan = make_plan(tiny_base(signals), arms=arms, seeds=3, overrides={"penalty": {"regularization.l2": 1e-3}})
    run_study(plan, tmp_path / "apart", stack=False)
    run_study(plan, tmp_path / "stacked")
    apart, stacked = _results(tmp_path / "apart"), _results(tmp_path / "stacked")
    assert apart.keys() == stacked.keys()
    for key, (metrics, history, _) in apart.items():
        other = stacked[key]
        rel = 1e-3 if key[0] == "batch-norm" else 1e-5  # Adam on the pre-norm biases (reglab.train.stacked)
        for a, b in zip(history, other[1], strict=True):
            for k in ("train_loss", "valid_loss"):
                assert b[k] == pytest.approx(a[k], rel=rel), (key, k)
        assert other[0]["stopped_epoch"] == metrics["stopped_epoch"], key
    store = StudyStore(sqlite_url(tmp_path / "stacked"), "regularization")
    stacked_with = {key_of(t): t.user_attrs["summary"].get("stacked") for t in store.trials([TrialState.COMPLETE])}
    assert stacked_with == {(a, s): None if a == "penalty" else [0, 1, 2] for a in arms for s in range(3)}
    joined = {key_of(t): t.user_attrs["summary"].get("stacked_arms") for t in store.trials([TrialState.COMPLETE])}
    models = [["baseline", "early-stopping"], ["shift", "mixup"]]  # two arms of 3 seeds a model (room 6)
    group = {arm: model for model in models for arm in model}
    assert joined == {(a, s): group.get(a) for a in arms for s in range(3)}
    assert (
        "Trained stacked (each arm's seeds as one model; arms joined by + as one model): baseline + early-stopping, "
        "batch-norm, dropout, mixup + shift; one trial at a time: penalty."
        in (tmp_path / "stacked" / "report.html").read_text()
    )  # a penalty in the loss does not stack; early stopping, shift and Mixup differ from the baseline in
    # their batches and their early stopping alone
    with open(tmp_path / "stacked" / "results.csv", newline="") as f:
        assert {(r["arm"], r["stacked_arms"]) for r in csv.DictReader(f)} >= {("mixup", "shift mixup")}


@pytest.mark.slow
def test_a_killed_stacked_study_resumes_and_completes_each_point_once(signals, tmp_path):
    """Killed while its second stack group (all three seeds claimed) is held (``held_cli.py``),
    the first group's six trials stored (baseline and l2, one stacked model, the longest first)."""
    args = ["study", "--dataset", signals, "--set", "data.batch_size=32", "--width", 16, "--epochs", 6,
            "--seeds", 3, "--arms", "baseline,dropout,l2", "--stack", "--quiet", "--out", tmp_path]  # fmt: skip
    url = sqlite_url(tmp_path)
    proc = held_cli(args, "after:1", tmp_path / "held")
    kill_when(proc, lambda: holding(tmp_path / "held") and _progressed(url, 6, running=3),
              "six trials stored, the second group held")  # fmt: skip
    counts, _ = _counts(url)
    assert sum(counts.values()) == 6
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    counts, store = _counts(url)
    assert counts == Counter({(a, s): 1 for a in ("baseline", "dropout", "l2") for s in range(3)})
    died = [t for t in store.trials([TrialState.FAIL]) if t.user_attrs.get("failure", "").startswith("worker died")]
    assert len(died) == 3, "the killed group's three trials were detected and run again"


def test_stack_groups_are_fixed_by_the_plan_not_by_the_workers_timing(signals, tmp_path):
    """While a trial of a group runs, no other worker may claim the group's waiting trials (it
    would take them apart from their group); of a group, only its first waiting seed is offered;
    an arm that does not stack offers every trial."""
    from reglab.lab.study.groups import group_leaders, stack_group
    from reglab.lab.study.runner import attach

    plan = make_plan(tiny_base(signals, epochs=2), arms=["baseline", "penalty"], seeds=3,
                     overrides={"penalty": {"regularization.l2": 1e-3}})  # fmt: skip
    store = attach(plan, sqlite_url(tmp_path))
    store.enqueue_missing([(a, s) for a in ("baseline", "penalty") for s in range(3)])
    keys = lambda ts: sorted(key_of(t) for t in ts)  # noqa: E731
    penalty = [("penalty", s) for s in range(3)]
    assert keys(group_leaders(plan, store, store.trials(), {})) == [("baseline", 0), *penalty]
    first = store.claim([t for t in store.trials() if key_of(t) == ("baseline", 1)])  # another worker took seed 1
    assert keys(group_leaders(plan, store, store.trials(), {})) == penalty
    store.fail(first._trial_id, "test")
    assert stack_group(plan, "baseline", 2) == ("baseline", 0)


def test_arms_that_differ_only_in_their_batches_share_stack_groups_as_the_room_allows(signals, tmp_path):
    """Arms of one stack key (here baseline, shift and input noise: the same model and optimizer)
    fill a group with whole arms: 6 copies on CPU, two arms of 3 seeds, in plan order; the
    room is stored with the study, and a GPU's room takes all three arms at once. Dropout's
    recipe has another model: a group of its own. The leader of a group is its first point."""
    from reglab.lab.study.groups import group_leaders, stack_group, stack_room
    from reglab.lab.study.runner import attach

    arms = ["baseline", "dropout", "shift", "input-noise"]
    plan = make_plan(tiny_base(signals, epochs=2), arms=arms, seeds=3)
    store = attach(plan, sqlite_url(tmp_path))
    store.enqueue_missing([(a, s) for a in arms for s in range(3)])
    keys = lambda ts: sorted(key_of(t) for t in ts)  # noqa: E731
    assert stack_room(plan, store) == 6 == store.attrs()["stack_room"]
    assert keys(group_leaders(plan, store, store.trials(), {})) == [("baseline", 0), ("dropout", 0), ("input-noise", 0)]
    family = ["baseline", "shift", "input-noise"]
    assert {stack_group(plan, a, s, 6, family) for a in ("baseline", "shift") for s in range(3)} == {("baseline", 0)}
    assert stack_group(plan, "input-noise", 1, 6, family) == ("input-noise", 0)
    assert stack_group(plan, "shift", 2, 64, family) == ("baseline", 0)
    assert stack_group(plan, "shift", 2, 2, family) == ("shift", 1)  # one arm's seeds fill a group: 2 at a time
    first = store.claim([t for t in store.trials() if key_of(t) == ("shift", 0)])  # its group is running
    assert keys(group_leaders(plan, store, store.trials(), {})) == [("dropout", 0), ("input-noise", 0)]
    store.fail(first._trial_id, "test")


def test_the_groups_of_more_copies_are_offered_first_then_in_plan_order(signals, tmp_path):
    """Longest first: the group of input noise and the baseline (6 copies: one stack key, two
    whole arms) before dropout's (3), which the plan lists first, and shift's (3, the key's
    third arm); between groups of one size, plan order."""
    from reglab.lab.study.groups import group_leaders
    from reglab.lab.study.runner import attach

    arms = ["dropout", "input-noise", "baseline", "shift"]
    plan = make_plan(tiny_base(signals, epochs=2), arms=arms, seeds=3)
    store = attach(plan, sqlite_url(tmp_path))
    store.enqueue_missing([(a, s) for a in arms for s in range(3)])
    leaders = [key_of(t) for t in group_leaders(plan, store, store.trials(), {})]
    assert leaders == [("input-noise", 0), ("dropout", 0), ("shift", 0)]


def test_the_combinations_seeds_are_split_over_the_workers_and_the_split_is_stored(signals, tmp_path):
    """The combination runs alone at the study's end: with 2 workers its 3 seeds form 2 groups
    (0-1 stacked, 2 alone), each offered to a worker; the size is stored with the study, so a
    worker that counts otherwise (1 worker, another machine) groups them alike; without a
    stored size, one worker stacks all three."""
    from reglab.lab.study.groups import combination_stack, group_leaders
    from reglab.lab.study.runner import attach, last_arm_threads
    from reglab.train.threads import cores

    plan = make_plan(tiny_base(signals, epochs=2), arms=["baseline", "combination"], seeds=3)
    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    store = attach(plan, sqlite_url(tmp_path / "two"))
    store.set_attr("combination", {"arms": ["dropout"], "skipped": [], "changes": {"model.dropout": 0.3}})
    store.enqueue_missing([("combination", s) for s in range(3)])
    keys = lambda ts: sorted(key_of(t) for t in ts)  # noqa: E731
    assert keys(group_leaders(plan, store, store.trials(), {}, workers=2)) == [("combination", 0), ("combination", 2)]
    assert store.attrs()["combination_stack"] == 2 == combination_stack(plan, store, workers=1)
    assert keys(group_leaders(plan, store, store.trials(), {}, workers=1)) == [("combination", 0), ("combination", 2)]
    first = store.claim([t for t in store.trials() if key_of(t) == ("combination", 0)])
    assert keys(group_leaders(plan, store, store.trials(), {}, workers=2)) == [("combination", 2)]  # 1 is 0's
    store.fail(first._trial_id, "test")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # each of the 2 groups may take half the cores, not all of them as one group would
        with last_arm_threads(plan, store, "combination", 0, "auto", True, {}, workers=2):
            assert torch.get_num_threads() == max(1, cores() // 2)
    finally:
        torch.set_num_threads(before)

    alone = attach(plan, sqlite_url(tmp_path / "one"))
    alone.set_attr("combination", {"arms": ["dropout"], "skipped": [], "changes": {"model.dropout": 0.3}})
    alone.enqueue_missing([("combination", s) for s in range(3)])
    assert keys(group_leaders(plan, alone, alone.trials(), {}, workers=1)) == [("combination", 0)]
    assert alone.attrs()["combination_stack"] == 3


@pytest.mark.slow
def test_two_workers_split_the_combination_and_the_report_says_how(signals, tmp_path):
    from reglab.lab.study.runner import attach

    plan = make_plan(tiny_base(signals, epochs=3), arms=["baseline", "dropout", "combination"], seeds=3)
    store = attach(plan, sqlite_url(tmp_path))  # the derivation fixed (whether dropout helps depends on the data)
    store.set_attr("combination", {"arms": ["dropout"], "skipped": [], "changes": {"model.dropout": 0.3}})
    run_study(plan, tmp_path, workers=2)
    stacked_with = {key_of(t): t.user_attrs["summary"].get("stacked") for t in store.trials([TrialState.COMPLETE])}
    assert stacked_with == {
        **{(a, s): [0, 1, 2] for a in ("baseline", "dropout") for s in range(3)},
        ("combination", 0): [0, 1], ("combination", 1): [0, 1], ("combination", 2): None,
    }  # fmt: skip
    assert (
        "Trained stacked (each arm's seeds as one model): baseline, combination (seeds 0 1 together, 2 alone), "
        "dropout." in (tmp_path / "report.html").read_text()
    )


@pytest.mark.slow
def test_two_workers_stack_each_arm_whole(signals, tmp_path):
    plan = make_plan(tiny_base(signals, epochs=3), arms=["baseline", "dropout", "early-stopping"], seeds=3)
    run_study(plan, tmp_path, workers=2)
    store = StudyStore(sqlite_url(tmp_path), "regularization")
    stacked_with = {key_of(t): t.user_attrs["summary"].get("stacked") for t in store.trials([TrialState.COMPLETE])}
    assert stacked_with == {(a, s): [0, 1, 2] for a in ("baseline", "dropout", "early-stopping") for s in range(3)}
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert {r["stacked"] for r in rows} == {"0 1 2"}  # results.csv says which seeds trained together
    assert {tuple(r["stacked"]) for r in json.loads((tmp_path / "results.json").read_text())} == {(0, 1, 2)}


def test_the_parent_enqueues_the_grid_before_any_worker_starts(signals, tmp_path, monkeypatch):
    """Two workers starting at once both found an empty study and both enqueued the grid: every
    point twice, the second copies failed as duplicates in the dashboard. The parent enqueues it
    now; the workers (here one, in-process) find it there."""
    import reglab.lab.study as study
    from reglab.lab.study.runner import work

    seen = []

    def in_process(plan, store, out, workers, threads, **kw):
        seen.append(sorted(key_of(t) for t in store.trials([TrialState.WAITING])))
        work(plan, store, out, stack=kw["stack"])

    monkeypatch.setattr(study, "run_workers", in_process)
    plan = make_plan(tiny_base(signals, epochs=1), arms=["baseline", "dropout"], seeds=2)
    run_study(plan, tmp_path, workers=2)
    assert seen == [sorted((a, s) for a in plan.arm_names for s in range(2))]
    store = StudyStore(sqlite_url(tmp_path), "regularization")
    assert len(store.trials()) == 4 and len(store.trials([TrialState.COMPLETE])) == 4


def test_a_point_another_worker_enqueued_since_the_snapshot_is_not_enqueued_again(signals, tmp_path):
    from reglab.lab.study.runner import attach

    plan = make_plan(tiny_base(signals, epochs=1), arms=["baseline"], seeds=2)
    store = attach(plan, sqlite_url(tmp_path))
    stale = store.trials()  # this worker's snapshot: empty
    points = [("baseline", 0), ("baseline", 1)]
    assert store.enqueue_missing(points) == 2  # another worker, meanwhile
    assert store.enqueue_missing(points, stale) == 0
    assert len(store.trials()) == 2


def test_a_finished_study_keeps_no_waiting_spare_copies(signals, tmp_path):
    """Spare copies of finished points (two workers that enqueued one point at once) are failed
    as duplicates once the study is done: a stacked group offers only its first waiting trial,
    and its other spares stayed WAITING in a finished study."""
    plan = make_plan(tiny_base(signals, epochs=1), arms=["baseline", "dropout"], seeds=3)
    run_study(plan, tmp_path)
    store = StudyStore(sqlite_url(tmp_path), "regularization")
    before = {key_of(t): t.value for t in store.trials([TrialState.COMPLETE])}
    for s in range(3):
        store.study.enqueue_trial({"arm": "dropout", "seed": s}, user_attrs={"arm": "dropout", "seed": s})
    run_study(plan, tmp_path)
    assert not store.trials([TrialState.WAITING, TrialState.RUNNING])
    spares = store.trials([TrialState.FAIL])
    assert sorted(key_of(t) for t in spares) == [("dropout", s) for s in range(3)]
    assert all(t.user_attrs["failure"].startswith("duplicate") for t in spares)
    assert {key_of(t): t.value for t in store.trials([TrialState.COMPLETE])} == before


def test_the_combination_trains_on_the_cores_the_finished_workers_left(signals, tmp_path, monkeypatch):
    """The combination runs once every other trial is complete: a worker holding one core of
    four (here: this process with one thread, and 4 cores) trains it with up to all four, by
    the same rule as any trial (threads for the stacked step's FLOPs); the other arms keep the
    worker's share."""
    import reglab.lab.study.points as points
    import reglab.lab.study.runner as runner
    import reglab.train.threads as threads_module
    from reglab.lab.build import build
    from reglab.train.threads import threads_for

    derived = {"arms": ["dropout"], "skipped": [], "changes": {"model.dropout": 0.3}}
    monkeypatch.setattr(points, "combination_changes", lambda plan, rows: derived)
    monkeypatch.setattr(threads_module, "cores", lambda: 4)
    base = tiny_base(signals, epochs=1).updated({"model.width": 512})
    plan = make_plan(base, arms=["baseline", "dropout", "combination"], seeds=3)
    store = runner.attach(plan, sqlite_url(tmp_path))
    trainer = build(plan.recipe("dropout", 0))
    expected = threads_for(trainer.model, trainer.data.x_train[: trainer.batch_size], available=4, copies=3)
    assert expected > 1
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner.work(plan, store, tmp_path, threads="auto", stack=True)
    finally:
        torch.set_num_threads(before)
    used = {key_of(t): t.user_attrs["summary"]["threads"] for t in store.trials([TrialState.COMPLETE])}
    assert used == {(a, s): expected if a == "combination" else 1 for a in plan.arm_names for s in range(3)}
