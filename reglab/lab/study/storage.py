"""A study's trials in an Optuna storage: enqueue the grid once, claim a trial atomically,
keep a lease on it while it runs, and detect workers that died.

Every grid point ``(arm, seed)`` is an Optuna trial, as an Optuna user knows one: ``arm`` and
``seed`` are its params (categorical distributions over the plan's arms and seeds: enqueued as
fixed params and suggested by the worker that claims the trial), its value is the validation
loss of the model the run returns (the study's one metric, named ``validation loss``), and its
intermediate values are the validation loss of every epoch, so that ``optuna-dashboard`` on the
storage shows each arm's learning curves. ``arm`` and ``seed`` are also user attributes, which a
trial has from the moment it is enqueued.
Points are enqueued as WAITING trials; a worker claims one by moving it WAITING → RUNNING,
which Optuna's RDB storage does under a row lock (PostgreSQL ``SELECT ... FOR UPDATE``; for
SQLite we open every transaction with ``BEGIN IMMEDIATE`` so that the read and the write of a
claim cannot interleave with another process's). A trial's results (summary, per-epoch
history, first-layer weight histogram) are its user attributes, written before it is marked
COMPLETE, so a COMPLETE trial always has them.

Exactly once: after claiming, a worker looks for another live or complete trial of the same
point (two workers may enqueue a point at the same moment) and, if there is one, gives its
claim up (FAIL, ``duplicate``) instead of running. Dead workers: a running trial holds a lease
(``host``, boot id, PID namespace, ``pid``, process start time, last ``beat``) renewed every
``BEAT`` seconds. A trial whose worker process is gone is marked FAIL and its point enqueued
again, its run folder's checkpoint letting the next attempt continue where it stopped. Whether
the process is gone is checked directly only where that check is certain (same host, same boot,
same PID namespace); anywhere else the lease decides: older than ``GRACE`` seconds, it is dead.
Beats are stamped, and compared, with the database's clock (``StudyStore.now``), so that the
clocks of the workers' machines, which may differ by minutes, never matter.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reglab.errors import InputError, WriteError
from reglab.lab.study.leases import lease_is_dead, process_identity

METRIC = "validation loss"  # what a trial's value is (of the model the run returns)
BEAT = 5.0  # seconds between lease renewals of a running trial


class StorageError(InputError, RuntimeError):
    """The study storage cannot be opened or holds another study under this name."""


def sqlite_url(folder: str | Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / 'study.db'}"


def open_storage(url: str):
    """An Optuna RDB storage for ``url``; SQLite gets serialized (``BEGIN IMMEDIATE``)
    transactions and a long busy timeout, so that several processes can share the file."""
    import optuna
    import sqlalchemy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sqlite = url.startswith("sqlite")
    engine_kwargs = {"connect_args": {"timeout": 120}} if sqlite else {"pool_pre_ping": True}
    for attempt in range(5):  # two processes creating the tables at once: one of them retries
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            break
        except Exception as e:  # noqa: BLE001 - any driver error means: cannot open
            if attempt == 4 or not _transient(e):
                raise StorageError(f"cannot open the study storage {redact_url(url)}: {_reason(e)}") from None
            time.sleep(0.2 * (attempt + 1))
    if sqlite:
        engine = storage.engine

        @sqlalchemy.event.listens_for(engine, "connect")
        def _no_pysqlite_transactions(dbapi_connection, record):  # pragma: no cover - driver hook
            dbapi_connection.isolation_level = None

        @sqlalchemy.event.listens_for(engine, "begin")
        def _begin_immediate(connection):  # pragma: no cover - driver hook
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        engine.dispose()  # pooled connections were opened before the hooks
    return storage


def _reason(e: BaseException) -> str:
    """Why a storage did not open, in one line; a missing driver module is named, with the fix
    (SQLAlchemy 2.1 maps a bare ``postgresql://`` to ``psycopg``, version 3, for instance)."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            return (
                f"the database driver module {cause.name!r} that this URL needs is not installed; install it, "
                "or name an installed driver in the URL "
                "(pip install 'reglab[postgres]' provides postgresql+psycopg2://)"
            )
        cause = cause.__cause__ or cause.__context__
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


FULL = ("database or disk is full", "no space left", "disk full", "could not extend file", "readonly database",
        "read-only file system", "disk i/o error")  # fmt: skip


def _out_of_room(e: BaseException) -> bool:
    """Whether a storage error (Optuna's, or the driver's beneath it) says the disk is full or
    read-only: the machine's trouble, not reglab's."""
    seen: BaseException | None = e
    while seen is not None:
        if any(s in str(seen).lower() for s in FULL):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _writes(method):
    """A StudyStore method that writes: a full or read-only disk under the storage becomes a
    one-line ``WriteError`` (the database keeps its last committed state)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            if isinstance(e, InputError) or not _out_of_room(e):
                raise
            raise WriteError(
                f"cannot write the study storage {redact_url(self.url)}: the disk under it is full or read-only; "
                "free some space"
            ) from e

    return wrapper


def _transient(e: Exception) -> bool:
    text = str(e).lower()
    return any(s in text for s in ("already exists", "locked", "duplicate", "unique constraint"))


def redact_url(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("://")
    if sep and "@" in tail:
        cred, _, host = tail.rpartition("@")
        user = cred.split(":", 1)[0]
        return f"{head}://{user}:***@{host}" if ":" in cred else url
    return url


_HELD: set[tuple[str, str, int]] = set()  # (url, study, trial id) of the trials this process runs now


class StudyStore:
    """One study in a storage: the grid's trials and their results."""

    def __init__(self, url: str, name: str) -> None:
        import optuna

        self.url, self.name = url, name
        self.storage = open_storage(url)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study = optuna.create_study(
                storage=self.storage, study_name=name, direction="minimize", load_if_exists=True
            )
        if not self.study.metric_names:
            with warnings.catch_warnings():  # experimental in Optuna 3-5
                warnings.simplefilter("ignore")
                self.study.set_metric_names([METRIC])

    @classmethod
    def existing(cls, url: str, name: str) -> StudyStore:
        import optuna

        storage = open_storage(url)
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        if name not in names:
            raise StorageError(
                f"the storage {redact_url(url)} holds no study named {name!r} (it holds: {', '.join(names) or 'none'})"
            )
        return cls(url, name)

    # -- study attributes ----------------------------------------------------------------------
    def attrs(self) -> dict[str, Any]:
        return self.study.user_attrs

    @_writes
    def set_attr(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, value)

    # -- trials --------------------------------------------------------------------------------
    def trials(self, states: Iterable[Any] | None = None) -> list[Any]:
        return self.study.get_trials(deepcopy=False, states=tuple(states) if states else None)

    # Reading trials parses their user attributes (histories included), so the methods below
    # take an optional snapshot ``trials`` (from ``self.trials()``) to share one read.
    def completed(self, trials: list[Any] | None = None) -> dict[tuple[str, int], Any]:
        """The COMPLETE trial of each grid point (the first, should a point hold two)."""
        from optuna.trial import TrialState

        done: dict[tuple[str, int], Any] = {}
        for t in sorted(
            _having(trials, TrialState.COMPLETE) if trials is not None else self.trials([TrialState.COMPLETE]),
            key=lambda t: t.number,
        ):
            done.setdefault(key_of(t), t)
        return done

    @_writes
    def enqueue_missing(self, points: Iterable[tuple[str, int]], trials: list[Any] | None = None) -> int:
        """Enqueue each point that has no waiting, running or complete trial; returns how many.
        What the snapshot ``trials`` lacks is looked up again first: another worker may have
        enqueued it since (two workers deriving the combination at once would both enqueue it;
        a copy left over is failed as a duplicate when claimed, ``drop_spares``)."""
        from optuna.trial import TrialState

        states = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
        points = list(points)
        live = {key_of(t) for t in (_having(trials, *states) if trials is not None else self.trials(states))}
        if trials is not None and any(p not in live for p in points):
            live = {key_of(t) for t in self.trials(states)}
        added = 0
        for arm, seed in points:
            if (arm, seed) not in live:
                self.study.enqueue_trial({"arm": arm, "seed": seed}, user_attrs={"arm": arm, "seed": seed})
                added += 1
        return added

    def drop_spares(self, trials: list[Any], done: Iterable[tuple[str, int]]) -> None:
        """Fail each waiting trial of a point in ``done`` (a spare copy: two workers enqueued the
        point at once) as a duplicate, so that a finished study holds no waiting trial."""
        from optuna.trial import TrialState

        finished = set(done)
        for t in _having(trials, TrialState.WAITING):
            if key_of(t) in finished:
                self.claim([t])  # claimed, found a duplicate of the complete trial, failed

    @_writes
    def claim(self, trials: list[Any] | None = None, choices: dict[str, list] | None = None) -> Any | None:
        """Claim a WAITING trial (→ RUNNING, with this process's lease); None if none is left.
        ``choices`` (``{"arm": [...], "seed": [...]}``, the plan's) become the claimed trial's
        params: each fixed value is suggested from its categorical distribution."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        for t in _having(trials, TrialState.WAITING) if trials is not None else self.trials([TrialState.WAITING]):
            try:
                if not self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                    continue
            except UpdateFinishedTrialError:
                continue
            self.renew(t._trial_id)
            _HELD.add((self.url, self.name, t._trial_id))
            if self._duplicate(t):
                self.fail(t._trial_id, "duplicate: another trial runs or ran this grid point")
                continue
            if choices:
                import optuna

                trial = optuna.Trial(self.study, t._trial_id)
                for name, values in choices.items():
                    trial.suggest_categorical(name, values)
            return self.storage.get_trial(t._trial_id)
        return None

    def _duplicate(self, claimed: Any) -> bool:
        from optuna.trial import TrialState

        key = key_of(claimed)
        return any(
            key_of(t) == key and t.number != claimed.number
            for t in self.trials([TrialState.RUNNING, TrialState.COMPLETE])
        )

    def now(self) -> float:
        """The database's clock, in seconds since the epoch: the one clock that every worker of a
        shared storage reads alike (PostgreSQL's server clock; SQLite's is the machine's)."""
        import sqlalchemy

        dialect = self.storage.engine.dialect.name
        query = {
            "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
            "postgresql": "SELECT EXTRACT(EPOCH FROM CLOCK_TIMESTAMP())",
            "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))",
        }.get(dialect)
        if query is None:  # pragma: no cover - another database: this machine's clock
            return time.time()
        with self.storage.engine.connect() as connection:
            return float(connection.execute(sqlalchemy.text(query)).scalar())

    @_writes
    def renew(self, trial_id: int) -> None:
        self.storage.set_trial_user_attr(trial_id, "lease", {**process_identity(), "beat": self.now()})

    @contextmanager
    def leased(self, trial_id: int) -> Iterator[None]:
        """Renew the trial's lease every ``BEAT`` seconds while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(BEAT):
                try:
                    self.renew(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried; GRACE covers several
                    pass

        thread = threading.Thread(target=beat, name=f"lease-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @_writes
    def complete(self, trial_id: int, value: float, attrs: dict[str, Any], curve: Iterable[float] = ()) -> None:
        """Store a finished trial: ``curve`` (the validation loss of each epoch, from epoch 1) as
        its intermediate values, its user attributes, then COMPLETE with ``value``. A non-finite
        epoch (a diverged run) is not reported: Optuna keeps finite intermediate values only."""
        import optuna
        from optuna.trial import TrialState

        trial = optuna.Trial(self.study, trial_id)
        for epoch, v in enumerate(curve, start=1):
            if v is not None and math.isfinite(v):
                trial.report(float(v), epoch)
        try:
            for key, v in attrs.items():
                self.storage.set_trial_user_attr(trial_id, key, v)
            self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
        finally:  # stored, or abandoned part-way (left RUNNING, for the next reap to run again)
            _HELD.discard((self.url, self.name, trial_id))

    def release(self, trial_id: int) -> None:
        """No longer hold a claimed trial (left RUNNING: the next ``reap`` fails it, and the
        point runs again, from its run folder's checkpoint)."""
        _HELD.discard((self.url, self.name, trial_id))

    @_writes
    def fail(self, trial_id: int, reason: str) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        _HELD.discard((self.url, self.name, trial_id))
        try:
            self.storage.set_trial_user_attr(trial_id, "failure", reason)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass

    @_writes
    def reap(self, trials: list[Any] | None = None) -> list[Any]:
        """Mark RUNNING trials whose worker is gone as FAIL; returns them."""
        from optuna.trial import TrialState

        now, dead = self.now(), []
        for t in _having(trials, TrialState.RUNNING) if trials is not None else self.trials([TrialState.RUNNING]):
            lease = t.user_attrs.get("lease")
            started = t.datetime_start.timestamp() if t.datetime_start else None
            if lease_is_dead(lease, now, started, held=(self.url, self.name, t._trial_id) in _HELD):
                who = f"pid {lease['pid']} on {lease['host']}" if lease else "unknown worker"
                self.fail(t._trial_id, f"worker died ({who})")
                dead.append(t)
        return dead


def _having(trials: list[Any], *states: Any) -> list[Any]:
    return [t for t in trials if t.state in states]


def key_of(trial: Any) -> tuple[str, int]:
    return trial.user_attrs["arm"], int(trial.user_attrs["seed"])
