"""Studies: an ablation of techniques over seeds, stored in Optuna, with a report.

>>> from reglab.lab.study import make_plan, run_study                      # doctest: +SKIP
>>> plan = make_plan(arms=["baseline", "dropout", "mixup"], seeds=3)   # doctest: +SKIP
>>> board = run_study(plan, "runs/study", workers=2)                    # doctest: +SKIP

``run_study`` checks everything it can before the first trial (every arm's recipe builds on the
data), stores trials in an Optuna storage (``OUT/study.db`` unless a URL is given), runs the
missing ones in ``workers`` processes, and writes ``OUT/report.html``, ``results.csv`` and
``results.json``. Re-running the same call runs only what is missing; ``rebuild_report(OUT)``
rewrites the report from the storage alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reglab._files import atomic_write, make_folder
from reglab.errors import InputError, MissingFileError, ReglabError, ReglabTypeError
from reglab.lab.study.plan import ARMS, COMBINATION, DEFAULT_NAME, Plan, load_study_file, make_plan
from reglab.lab.study.report import write_report
from reglab.lab.study.runner import StudyError, attach, grid, work
from reglab.lab.study.storage import StorageError, StudyStore, redact_url, sqlite_url
from reglab.lab.study.terminal import print_leaderboard
from reglab.lab.study.workers import run_workers, thread_share

__all__ = [
    "ARMS", "COMBINATION", "DEFAULT_NAME", "Plan", "StorageError", "StudyError", "load_study_file", "make_plan",
    "print_leaderboard", "rebuild_report", "run_study",
]  # fmt: skip


def preflight(plan: Plan) -> None:
    """Build every arm's trainer on its data (first seed), so that a bad data path, bad data or
    an arm that does not fit the data fails now, before the storage or any file is touched."""
    from reglab.data import load_data
    from reglab.lab.run import build

    loaded: dict[Any, Any] = {}
    for arm in plan.arms:
        recipe = plan.recipe(arm.name, plan.seeds[0])
        key = (recipe.data, plan.seeds[0])
        if key not in loaded:
            loaded[key] = load_data(recipe.data, plan.seeds[0], regression=recipe.training.regression)
        try:
            build(recipe, data=loaded[key])
        except InputError as e:
            raise e.within(f"arm {arm.name!r}")


def run_study(
    plan: Plan,
    out: str | Path,
    storage: str | None = None,
    workers: int = 1,
    threads: int | None = None,
    progress: bool = False,
    stack: bool = True,
) -> list[dict[str, Any]]:
    """Run ``plan`` (only its missing trials) and write the report into ``out``; returns the
    leaderboard (one entry per arm, best test loss first). Each of the ``workers`` processes
    uses ``threads`` torch threads (default: per trial, as many as its model's size uses well,
    ``reglab.train.threads``, within its share of the CPU cores, ``cores // workers``); no more
    processes start than trials are missing. ``stack`` (on by default): a worker trains the
    waiting seeds of an arm, with those of the arms that differ from it only in what their
    batches go through and in early stopping as far as the device has room (its stack group,
    fixed by the plan), as one stacked model where the recipe allows (``reglab.lab.stack``; each
    trial records the seeds and arms it was stacked with, the report says which arms stacked);
    ``stack=False`` trains one trial at a time."""
    import torch

    from reglab._checks import check_bool, check_folder, check_int

    if not isinstance(plan, Plan):
        raise ReglabTypeError(
            f"plan must be a Plan: make_plan(recipe, arms=[...], seeds=3) builds one; got {type(plan).__name__}"
        )
    workers = check_int("workers", workers, low=1)
    check_bool("stack", stack)
    auto = threads is None
    threads = thread_share(workers) if threads is None else check_int("threads", threads, low=1)
    out = check_folder("out", out)
    url = storage or sqlite_url(out)
    _check_folder_is_ours(out, url, plan.name)  # before anything runs: another study's files stay whole
    preflight(plan)
    make_folder(out)
    store = attach(plan, url)
    _write_pointer(out, url, plan.name)
    completed = store.completed()
    store.enqueue_missing(grid(plan, store, completed))  # here, not by workers starting at once: each point once
    total, done = len(plan.arm_names) * len(plan.seeds), len(completed)
    workers = max(
        1, min(workers, total - done)
    )  # a process per missing trial at most; `threads` stays the share asked for
    with _Progress(total, done, enabled=progress) as bar:
        if workers == 1:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                work(plan, store, out, on_trial=bar.trial, threads="auto" if auto else None, stack=stack)
            finally:
                torch.set_num_threads(before)
        else:
            run_workers(plan, store, out, workers, threads, on_trial=bar.trial, auto=auto, stack=stack)
    return write_report(store, out)


def rebuild_report(out: str | Path, storage: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    """Rewrite ``out``'s report from the study's storage alone (no training)."""
    out = Path(out)
    saved = read_pointer(out)
    if storage is None:
        if not saved and not (out / "study.db").exists():
            raise MissingFileError(
                f"{out} holds no study (no study.json or study.db); give the study's folder, or --storage and --name"
            )
        if saved.get("password_removed"):
            raise ReglabError(f"the storage URL of {out} had a password, which is not stored; pass --storage URL")
        storage = stored_url(out, saved) or sqlite_url(out)
    store = StudyStore.existing(storage, name or saved.get("name", DEFAULT_NAME))
    return write_report(store, out)


POINTER = "study.json"  # in a study's folder: which storage and study name it reports


def read_pointer(out: Path) -> dict[str, Any]:
    """``out/study.json`` as a dict (empty when there is none); a damaged one is an error."""
    pointer = out / POINTER
    try:
        saved = json.loads(pointer.read_text(encoding="utf-8")) if pointer.is_file() else {}
    except (ValueError, UnicodeDecodeError) as e:  # not JSON: damaged, or written by something else
        raise ReglabError(
            f"{pointer} is damaged ({e}); give the study's storage and name: --storage URL --name NAME"
        ) from None
    if not isinstance(saved, dict) or not isinstance(saved.get("storage", ""), str):
        raise ReglabError(f"{pointer} does not describe a study; give --storage URL --name NAME")
    return saved


def stored_url(out: Path, saved: dict[str, Any]) -> str | None:
    """The storage URL that ``study.json`` names: the folder's own database is stored as a path
    relative to the folder (so that a moved or copied folder reports its own); a URL as given.
    A pointer to the default database of *another* study folder (a folder copied with an older
    reglab, which stored absolute paths) is refused rather than silently reporting the original."""
    where = saved.get("storage")
    if not where:
        return None
    if "://" not in where:
        return f"sqlite:///{(out / where).resolve()}"
    if where.startswith("sqlite:///"):
        path = Path(where[len("sqlite:///") :])
        other = path.parent
        if path.name == "study.db" and other.resolve() != out.resolve():
            if (other / POINTER).is_file():
                raise StudyError(
                    f"{out / POINTER} points to the database of another study folder, {other}: this folder was "
                    f"copied from there, and its report would be the original's; report {other}, or this "
                    f"folder's own copy with --storage sqlite:///{(out / 'study.db').resolve()}"
                )
            if not path.exists() and (out / "study.db").exists():  # the folder was moved: its own database
                return sqlite_url(out)
    return where


def _check_folder_is_ours(out: Path, url: str, name: str) -> None:
    """A folder holds one study: running another into it (another name or storage) would
    replace its report and results, so it is refused."""
    saved = read_pointer(out)
    if not saved:
        return
    theirs = saved.get("name", DEFAULT_NAME)
    if theirs != name:
        raise StudyError(
            f"{out} holds the study {theirs!r}; this study is {name!r}: choose another --out "
            f"(by default each study has its own folder, runs/{name}), or pass --name {theirs} to continue that one"
        )
    where = stored_url(out, saved)
    if where is not None and where != redact_url(url):
        raise StudyError(
            f"{out} holds the study {name!r} stored in {where}; pass --storage {where} to continue it, "
            "or choose another --out"
        )


def _write_pointer(out: Path, url: str, name: str) -> None:
    """``out/study.json``: where the study lives, for ``reglab report`` (no password kept)."""
    safe = "study.db" if url == sqlite_url(out) else redact_url(url)  # the folder's own: a relative path
    d = {"storage": safe, "name": name, "password_removed": safe not in (url, "study.db")}
    atomic_write(out / "study.json", json.dumps(d, indent=1))


class _Progress:
    """A rich progress bar of finished trials (silent when disabled)."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, done, enabled

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
            )
            self.bar.start()
            self.task = self.bar.add_task("trials", total=self.total, completed=self.done)
        return self

    def trial(self, arm: str, seed: int, event: str) -> None:
        if event == "done":
            self.done += 1
        if self.enabled:
            self.bar.update(
                self.task,
                completed=self.done,
                description=f"trials ({arm} seed {seed})" if event == "start" else "trials",
            )

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            if exc[0] is None:  # finished: a combination that was not run is not left owing
                self.bar.update(self.task, total=self.done, completed=self.done)
            self.bar.stop()
