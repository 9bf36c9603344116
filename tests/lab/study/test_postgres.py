"""Two workers on one PostgreSQL study: a real server on localhost, started by the test
(Debian's postgresql, installed by .ci/run; skipped only outside CI when it is absent)."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter

import pytest
from optuna.trial import TrialState

from reglab.lab.study.storage import StudyStore, key_of

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = pytest.mark.skipif(
    not BIN and not os.environ.get("CI"), reason="PostgreSQL is not installed (CI installs it)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    assert BIN, "PostgreSQL is missing: .ci/run installs it from Debian"
    bindir = BIN[-1]
    root = tempfile.mkdtemp(prefix="reglab-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(root, "data"), _free_port()

    def run(*cmd):
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres")
    run(
        f"{bindir}/pg_ctl",
        "-D",
        data,
        "-w",
        "-l",
        os.path.join(root, "log"),
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "reglab")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/reglab"
    finally:
        subprocess.run(
            [*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_one_postgresql_study_complete_each_point_once(signals, tmp_path, postgres_url):
    arms = ("baseline", "dropout", "mixup")
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
        ",".join(arms),
        "--storage",
        postgres_url,
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reglab.lab.cli", *map(str, args), "--out", str(tmp_path / f"machine{i}")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        for i in range(2)
    ]  # fmt: skip
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    store = StudyStore(postgres_url, "regularization")
    counts = Counter(key_of(t) for t in store.trials([TrialState.COMPLETE]))
    assert counts == Counter({(a, s): 1 for a in arms for s in range(3)})
    assert not store.trials([TrialState.RUNNING, TrialState.WAITING])
    assert (tmp_path / "machine0" / "report.html").exists() and (tmp_path / "machine1" / "report.html").exists()


@pytest.mark.slow
def test_two_search_workers_on_one_postgresql_server_run_exactly_n_trials(signals, postgres_url):
    import optuna

    from reglab.lab.recipe import Recipe
    from reglab.lab.tune import make_space
    from reglab.lab.tune.search import run_search

    base = Recipe().updated({"data.name": "npz", "data.path": str(signals), "data.batch_size": 32, "model.width": 16,
                             "training.epochs": 6})  # fmt: skip
    run_search(postgres_url, "pg-tune", base, make_space(base, ["dropout", "shift"]), trials=6, timeout=None,
               workers=2, threads=1, sampler="tpe", pruner="median")  # fmt: skip
    study = optuna.load_study(study_name="pg-tune", storage=postgres_url)
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(done) == 6 and len({t.number for t in done}) == 6
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
