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

from reglab._files import atomic_write
from reglab.errors import InputError, MissingFileError, ReglabError, ReglabTypeError
from reglab.lab.study.plan import ARMS, COMBINATION, Plan, load_study_file, make_plan
from reglab.lab.study.report import print_leaderboard, write_report
from reglab.lab.study.runner import StudyError, attach, run_workers, thread_share, work
from reglab.lab.study.storage import StorageError, StudyStore, redact_url, sqlite_url

__all__ = [
    "ARMS", "COMBINATION", "Plan", "StorageError", "StudyError", "load_study_file", "make_plan", "print_leaderboard",
    "rebuild_report", "run_study",
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
) -> list[dict[str, Any]]:
    """Run ``plan`` (only its missing trials) and write the report into ``out``; returns the
    leaderboard (one entry per arm, best test loss first). Each of the ``workers`` processes
    uses ``threads`` torch threads (default: its share of the CPU cores, ``cores // workers``);
    no more processes start than trials are missing."""
    import torch

    from reglab._checks import check_folder, check_int

    if not isinstance(plan, Plan):
        raise ReglabTypeError(
            f"plan must be a Plan: make_plan(recipe, arms=[...], seeds=3) builds one; got {type(plan).__name__}"
        )
    workers = check_int("workers", workers, low=1)
    threads = thread_share(workers) if threads is None else check_int("threads", threads, low=1)
    out = check_folder("out", out)
    preflight(plan)
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
    url = storage or sqlite_url(out)
    store = attach(plan, url)
    out.mkdir(parents=True, exist_ok=True)
    _write_pointer(out, url, plan.name)
    total, done = len(plan.arm_names) * len(plan.seeds), len(store.completed())
    workers = max(
        1, min(workers, total - done)
    )  # a process per missing trial at most; `threads` stays the share asked for
    with _Progress(total, done, enabled=progress) as bar:
        if workers == 1:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                work(plan, store, out, on_trial=bar.trial)
            finally:
                torch.set_num_threads(before)
        else:
            run_workers(plan, store, out, workers, threads, on_trial=bar.trial)
    return write_report(store, out)


def rebuild_report(out: str | Path, storage: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    """Rewrite ``out``'s report from the study's storage alone (no training)."""
    out = Path(out)
    pointer = out / "study.json"
    try:
        saved = json.loads(pointer.read_text(encoding="utf-8")) if pointer.exists() else {}
    except (ValueError, UnicodeDecodeError) as e:  # not JSON: damaged, or written by something else
        raise ReglabError(
            f"{pointer} is damaged ({e}); give the study's storage and name: --storage URL --name NAME"
        ) from None
    if not isinstance(saved, dict):
        raise ReglabError(f"{pointer} does not describe a study; give --storage URL --name NAME")
    if storage is None:
        if not saved and not (out / "study.db").exists():
            raise MissingFileError(
                f"{out} holds no study (no study.json or study.db); give the study's folder, or --storage and --name"
            )
        if saved.get("password_removed"):
            raise ReglabError(f"the storage URL of {out} had a password, which is not stored; pass --storage URL")
        storage = saved.get("storage") or sqlite_url(out)
    store = StudyStore.existing(storage, name or saved.get("name", "default"))
    return write_report(store, out)


def _write_pointer(out: Path, url: str, name: str) -> None:
    """``out/study.json``: where the study lives, for ``reglab report`` (no password kept)."""
    safe = redact_url(url)
    d = {"storage": safe, "name": name, "password_removed": safe != url}
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
            self.bar.stop()
