"""A study's trials are Optuna trials as an Optuna user knows them: params, intermediate values,
a named metric, and the study's recommendation; ``optuna-dashboard`` shows them."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from study_helpers import tiny_base

from reglab.lab.study import make_plan, run_study
from reglab.lab.study.storage import sqlite_url

EPOCHS = 3


@pytest.fixture(scope="module")
def finished(tmp_path_factory, signals):
    out = tmp_path_factory.mktemp("native")
    base = tiny_base(signals).updated({"training.epochs": EPOCHS})
    plan = make_plan(base, arms=["baseline", "dropout"], seeds=2, name="native")
    run_study(plan, out)
    return out, plan


def test_trials_carry_params_intermediate_values_and_the_metric_name(finished):
    out, plan = finished
    study = optuna.load_study(study_name="native", storage=sqlite_url(out))
    assert study.metric_names == ["validation loss"]
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert sorted((t.params["arm"], t.params["seed"]) for t in trials) == sorted(
        (a, s) for a in ("baseline", "dropout") for s in (0, 1)
    )
    for t in trials:
        assert t.distributions["arm"] == optuna.distributions.CategoricalDistribution(["baseline", "dropout"])
        assert t.distributions["seed"] == optuna.distributions.CategoricalDistribution([0, 1])
        history = t.user_attrs["history"]
        assert sorted(t.intermediate_values) == list(range(1, EPOCHS + 1))
        assert [t.intermediate_values[e] for e in range(1, EPOCHS + 1)] == [r["valid_loss"] for r in history]
    assert "beat the baseline" in study.user_attrs["recommendation"] or "None of" in study.user_attrs["recommendation"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_optuna_dashboard_shows_every_trial_with_its_arm_seed_and_curve(finished):
    out, _ = finished
    exe = shutil.which("optuna-dashboard")
    command = [exe] if exe else [sys.executable, "-c", "from optuna_dashboard._cli import main; main()"]
    port = _free_port()
    proc = subprocess.Popen(
        [*command, sqlite_url(out), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.3)
        (summary,) = [s for s in studies if s["study_name"] == "native"]
        detail = _get(f"{base}/api/studies/{summary['study_id']}")
        complete = [t for t in detail["trials"] if t["state"] == "Complete"]
        assert len(complete) == 4
        for t in complete:
            params = {p["name"]: p["param_external_value"] for p in t["params"]}
            assert set(params) == {"arm", "seed"} and params["arm"] in ("baseline", "dropout")
            assert [v["step"] for v in t["intermediate_values"]] == list(range(1, EPOCHS + 1))
        assert detail["has_intermediate_values"] and detail["objective_names"] == ["validation loss"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
