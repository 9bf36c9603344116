import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from reglab.lab.study.leases import GRACE, lease_is_dead, process_identity
from reglab.lab.study.storage import (
    StorageError,
    StudyStore,
    key_of,
    sqlite_url,
)

POINTS = [(arm, seed) for arm in ("a", "b", "c", "d", "e") for seed in range(4)]


def _claim_all(url, queue):
    store = StudyStore(url, "s")
    mine = []
    while (t := store.claim()) is not None:
        mine.append(key_of(t))
        store.complete(t._trial_id, 0.0, {"by": os.getpid()})
    queue.put(mine)


@pytest.mark.slow
def test_two_processes_claim_each_point_exactly_once(tmp_path):
    url = sqlite_url(tmp_path)
    StudyStore(url, "s").enqueue_missing(POINTS)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(url, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    flat = [k for c in claimed for k in c]
    assert sorted(flat) == sorted(POINTS), "every point claimed once, none twice"
    assert len(StudyStore(url, "s").completed()) == len(POINTS)


def test_a_point_enqueued_twice_runs_once(tmp_path):
    store = StudyStore(sqlite_url(tmp_path), "s")
    for _ in range(2):  # as two workers enqueueing at the same moment would
        store.study.enqueue_trial({"arm": "a", "seed": 0}, user_attrs={"arm": "a", "seed": 0})
    first = store.claim()
    assert first is not None and store.claim() is None, "the second copy gives its claim up"
    failed = store.trials([TrialState.FAIL])
    assert len(failed) == 1 and failed[0].user_attrs["failure"].startswith("duplicate")
    assert store.enqueue_missing([("a", 0)]) == 0, "a running point is not enqueued again"


def test_enqueue_missing_is_idempotent(tmp_path):
    store = StudyStore(sqlite_url(tmp_path), "s")
    assert store.enqueue_missing(POINTS) == len(POINTS)
    assert store.enqueue_missing(POINTS) == 0
    assert len(store.trials()) == len(POINTS)


def test_dead_worker_is_reaped_and_its_point_enqueued_again(tmp_path):
    store = StudyStore(sqlite_url(tmp_path), "s")
    store.enqueue_missing([("a", 0), ("b", 0)])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    t = store.claim()
    store.storage.set_trial_user_attr(t._trial_id, "lease", {**process_identity(child.pid), "beat": time.time()})
    assert store.reap() == [], "a live worker keeps its trial"
    child.kill()
    child.wait()
    assert [d.number for d in store.reap()] == [t.number]
    assert store.storage.get_trial(t._trial_id).state == TrialState.FAIL
    assert store.enqueue_missing([("a", 0), ("b", 0)]) == 1


def test_lease_rules():
    now = time.time()
    me = {**process_identity(), "beat": now - 10 * GRACE}
    assert not lease_is_dead(me, now, None, held=True), "this process is alive, however old its beat"
    assert lease_is_dead(me, now, None), "this process is alive but let the trial go (a call that failed part-way)"
    remote = {"host": "elsewhere", "boot": "x", "pid": 1, "start": 1}
    assert not lease_is_dead({**remote, "beat": now - GRACE / 2}, now, None)
    assert lease_is_dead({**remote, "beat": now - 2 * GRACE}, now, None)
    assert lease_is_dead(None, now, now - 2 * GRACE) and not lease_is_dead(None, now, now - 1)


@pytest.mark.parametrize(
    "url", ["nosuchdriver://x/y", "postgresql+psycopg2://u:secret@127.0.0.1:9/db", "sqlite:////no/such/folder/x.db"]
)
def test_unreachable_storage_is_one_line_without_password(url):
    with pytest.raises(StorageError) as e:
        StudyStore(url, "s")
    text = str(e.value)
    assert text.startswith("cannot open the study storage") and "\n" not in text and "secret" not in text


def test_a_missing_driver_module_is_named_with_the_fix():
    import importlib.util

    if importlib.util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed here")
    with pytest.raises(StorageError) as e:
        StudyStore("postgresql+pg8000://u:secret@127.0.0.1:9/db", "s")
    text = str(e.value)
    assert "driver module 'pg8000'" in text and "postgresql+psycopg2://" in text
    assert "\n" not in text and "secret" not in text


def test_report_of_a_missing_study_names_what_exists(tmp_path):
    url = sqlite_url(tmp_path)
    StudyStore(url, "here")
    with pytest.raises(StorageError, match="no study named 'gone' .*it holds: here"):
        StudyStore.existing(url, "gone")


def test_leases_use_the_database_clock_so_a_clock_ten_minutes_ahead_fails_no_live_trial(tmp_path, monkeypatch):
    """A worker whose machine's clock runs 10 minutes ahead stamps its beat with the database's
    clock; a reaper on a machine with the right time reads the same clock: nobody is reaped.
    The lease is made to look remote (another host), where only the beat's age can tell."""
    store = StudyStore(sqlite_url(tmp_path), "s")
    store.enqueue_missing([("a", 0)])
    t = store.claim()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 600)  # the worker's machine: 10 minutes ahead
    store.renew(t._trial_id)
    lease = store.storage.get_trial(t._trial_id).user_attrs["lease"]
    assert abs(lease["beat"] - real()) < 5, "the beat is the database's time, not the worker's clock"
    store.storage.set_trial_user_attr(t._trial_id, "lease", {**lease, "host": "worker-machine"})
    assert store.reap() == [], "read against the database's clock, the beat is fresh"
    monkeypatch.setattr(time, "time", real)  # and a reaper whose clock is right agrees
    assert store.reap() == []
    assert store.storage.get_trial(t._trial_id).state == TrialState.RUNNING


CHILD = """
import sys, time
from reglab.lab.study import storage
storage.BEAT = 0.2
store = storage.StudyStore(sys.argv[1], "s")
t = store.claim()
with store.leased(t._trial_id):
    print(t.number, flush=True)
    time.sleep(120)
"""


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("unshare") or os.geteuid() != 0, reason="needs unshare and root (the CI machine)")
def test_a_worker_in_another_pid_namespace_is_reaped_only_once_it_is_dead(tmp_path, monkeypatch):
    """Two containers may share a host name and a boot id but not their pids: the worker's pid
    means nothing here, so its lease decides (alive while it beats, dead GRACE after it stops)."""
    from reglab.lab.study import leases

    monkeypatch.setattr(leases, "GRACE", 2.0)
    url = sqlite_url(tmp_path)
    store = StudyStore(url, "s")
    store.enqueue_missing([("a", 0)])
    child = subprocess.Popen(
        ["unshare", "--pid", "--fork", sys.executable, "-c", CHILD, url],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # one process group: unshare and the worker it forked die together
    )
    try:
        number = int(child.stdout.readline())
        lease = store.trials()[0].user_attrs["lease"]
        assert lease["pidns"] != process_identity()["pidns"] and lease["pid"] < 10, "the child's own pid namespace"
        deadline = time.monotonic() + 4 * leases.GRACE
        while time.monotonic() < deadline:  # alive: never reaped, whatever its pid names here
            assert store.reap() == []
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    time.sleep(leases.GRACE + 0.5)
    assert [t.number for t in store.reap()] == [number]
