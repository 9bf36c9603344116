"""``reglab study`` / ``reglab report`` from the command line, bad input included."""

import csv
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from study_helpers import run_cli

from reglab.lab.study import ARMS

ARGS = ["--width", 16, "--epochs", 3, "--seeds", 2, "--arms", "baseline,dropout", "--quiet"]


def _snapshot(folder):
    return {
        p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(signals, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "study"
    done = run_cli("study", "--dataset", signals, *ARGS, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "report:" in done.stdout
    return out


@pytest.mark.slow
def test_report_rebuilds_from_storage(finished):
    (finished / "report.html").unlink()
    r = run_cli("report", finished)
    assert r.returncode == 0, r.stderr
    assert (finished / "report.html").exists() and "dropout" in r.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--arms", "baseline,dropuot"], "unknown arm 'dropuot'"),
        (["--config", "{bad_toml}"], "is not valid TOML"),
        (["--storage", "postgresql+psycopg2://nobody:pw@127.0.0.1:9/none"], "pass --storage sqlite:///"),
        (["--dataset", "/no/such/data.npz"], "/no/such/data.npz"),
        (["--seeds", 5], "another plan (seeds: 0, 1 -> 0, 1, 2, 3, 4)"),
        (["--workers", 0], "workers"),
        (["--arms", ""], "the study has no arms"),
        (["capacty"], "unknown study 'capacty'; the built-in studies: regularization, capacity"),
        (["--config", "{sweep_unknown}"], "sweep 'model.widht': no recipe field is called 'model.widht'"),
        (["--config", "{sweep_refused}"], "sweep 'model.dropout': the value 1.5 is refused: model.dropout"),
        (["--config", "{sweep_empty}"], "sweep 'model.width' is empty"),
        (
            ["--config", "{sweep}"],
            "the sweep of model.width adds the arms width-8, width-32, but the arm list (baseline",
        ),
        (
            ["--config", "{sweep}", "--arms", "baseline,width-8,width-12"],
            "arm 'width-12' is not a point of the sweep model.width = [8, 32]",
        ),
        (["--config", "{rnn_images}"], "arm 'rnn-digits': model.kind = 'rnn' reads signals; digits samples have shape"),
        (["--config", "{gru_batch_norm}"], "model.norm = 'batch' is not one gru takes: none"),
    ],
    ids=[
        "unknown-arm",
        "malformed-file",
        "unreachable-storage",
        "missing-data",
        "changed-plan",
        "zero-workers",
        "no-arms",
        "unknown-study",
        "sweep-unknown-field",
        "sweep-refused-value",
        "sweep-empty",
        "sweep-contradicted",
        "sweep-not-a-point",
        "rnn-asked-for-images",
        "norm-the-kind-refuses",
    ],
)
@pytest.mark.slow
def test_bad_input_exits_nonzero_with_one_line_and_leaves_results_untouched(
    finished, signals, tmp_path, capsys, extra, message
):
    """In this process (every case fails before training): ``main``'s exit status and stderr."""
    from reglab.lab.cli import main

    files = {
        "bad_toml": "arms = [",
        "sweep_unknown": '[sweep]\n"model.widht" = [8, 16]\n',
        "sweep_refused": '[sweep]\n"model.dropout" = [0.1, 1.5]\n',
        "sweep_empty": '[sweep]\n"model.width" = []\n',
        "sweep": '[sweep]\n"model.width" = [8, 32]\n',
        "rnn_images": 'arms = ["baseline", "rnn-digits"]\n[arm.rnn-digits]\n"model.kind" = "rnn"\n"model.depth" = 1\n'
        '"data.name" = "digits"\n',
        "gru_batch_norm": 'arms = ["baseline", "gru"]\n[arm.gru]\n"model.kind" = "gru"\n"model.norm" = "batch"\n',
    }
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text)
    before = _snapshot(finished)
    extra = [str(tmp_path / f"{e[1:-1]}.toml") if str(e).startswith("{") else e for e in extra]
    if extra[0] == "capacty":  # a study name comes first
        args, extra = ["study", "capacty", "--dataset", signals, *ARGS, "--out", finished], []
    else:
        args = ["study", "--dataset", signals, *ARGS, "--out", finished]
    code = main([str(a) for a in (*args, *extra)])  # later flags win
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reglab: error:") and message in lines[0], err
    assert _snapshot(finished) == before


@pytest.mark.parametrize("command", ["report", "study"])
@pytest.mark.slow
def test_output_into_a_closed_pipe_ends_quietly(finished, signals, command):
    """``reglab report DIR | head -1``: no traceback when the reader goes away, and the study is intact."""
    args = ["report", finished] if command == "report" else ["study", "--dataset", signals, *ARGS, "--out", finished]
    before = _snapshot(finished)
    read, write = os.pipe()
    os.close(read)  # every write to the pipe now fails with EPIPE
    try:
        r = subprocess.run(
            [sys.executable, "-m", "reglab.lab.cli", *map(str, args)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    finally:
        os.close(write)
    assert r.returncode == 1 and r.stderr == "", r.stderr
    assert {p for p in before if p.name != "report.html"} <= set(_snapshot(finished))


@pytest.mark.slow
def test_report_of_a_folder_without_a_study_fails_clearly(tmp_path):
    r = run_cli("report", tmp_path)
    assert r.returncode == 2 and "holds no study" in r.stderr


@pytest.mark.slow
def test_a_study_of_a_tabular_csv_runs_the_arms_that_fit(tmp_path):
    """A CSV of feature vectors: shift and CutMix (signal/image axes) are left out and named;
    every other arm runs, Mixup included."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    lines = ["a,b,c,d,e,f,label", *(",".join([*(f"{v:.4f}" for v in row), label]) for row, label in zip(x, y))]
    (tmp_path / "tab.csv").write_text("\n".join(lines) + "\n")
    r = run_cli(
        "study",
        "--dataset",
        tmp_path / "tab.csv",
        "--width",
        8,
        "--epochs",
        2,
        "--seeds",
        1,
        "--quiet",
        "--out",
        tmp_path / "s",
    )
    assert r.returncode == 0, r.stderr
    assert "arm shift left out: it needs signals or images; samples here have shape (6,)" in r.stdout
    assert "arm cutmix left out" in r.stdout
    arms = {row["arm"] for row in csv.DictReader((tmp_path / "s" / "results.csv").read_text().splitlines())}
    assert arms == set(ARMS) - {"shift", "cutmix", "combination"}  # one seed: nothing can pass, nothing to combine
    page = (tmp_path / "s" / "report.html").read_text()  # built from the storage: what was left out is kept there
    assert "<td>shift</td><td>not run: it needs signals or images" in page and page.count("<tr class=left-out>") == 3
