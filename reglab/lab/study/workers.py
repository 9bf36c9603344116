"""Local worker processes of a study (``--workers N``): each runs ``runner.work`` against the
study's storage; the parent relays their progress and tells bad input (``StudyError``) from an
internal error (``WorkerCrashed``, the worker's traceback printed)."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reglab.errors import InputError
from reglab.lab.study.plan import Plan
from reglab.lab.study.runner import StudyError, work
from reglab.lab.study.storage import StudyStore
from reglab.train.threads import cores

INTERNAL_EXIT = 3  # a worker's exit status after an internal error (1: bad input, 130: interrupted)


class WorkerCrashed(RuntimeError):
    """A local worker ended with an internal error (its traceback is printed above)."""


def thread_share(workers: int) -> int:
    """Each of ``workers`` local processes' share of this process's CPU cores (at least 1)."""
    return max(1, cores() // workers)


def _die_with_parent(parent: int) -> None:
    """Linux: a worker is killed with its parent, so a killed study leaves no orphan running
    (and exits now if the parent died while the worker was starting)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - other platforms
        pass
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(
    plan_dict: dict[str, Any],
    url: str,
    out: str,
    threads: int,
    auto: bool,
    stack: bool,
    events: Any,
    parent: int,
    workers: int = 1,
) -> None:
    _die_with_parent(parent)
    torch.set_num_threads(threads)
    try:
        plan = Plan.from_dict(plan_dict)
        work(
            plan,
            StudyStore(url, plan.name),
            Path(out),
            on_trial=lambda arm, seed, event: events.put((arm, seed, event)),
            threads="auto" if auto else None,
            stack=stack,
            workers=workers,
        )
    except KeyboardInterrupt:
        sys.exit(130)
    except InputError as e:  # reported on the worker's stderr in one line
        print(f"reglab: worker {os.getpid()}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception:  # an internal error: its traceback, then a status the parent tells apart
        traceback.print_exc()
        sys.exit(INTERNAL_EXIT)


def run_workers(
    plan: Plan,
    store: StudyStore,
    out: Path,
    workers: int,
    threads: int,
    on_trial: Callable[[str, int, str], None] | None = None,
    auto: bool = False,
    stack: bool = False,
) -> None:
    """Run ``workers`` local processes (each with ``threads`` torch threads, or with ``auto`` up
    to ``threads`` per trial, by its model's size) until the study is complete;
    ``on_trial(arm, seed, event)`` hears of each trial's start and end.

    The workers are spawned, on every platform: fresh interpreters, which pay their imports
    (BENCHMARKS.md) but inherit no state. A forked child inherits libgomp's state without the
    parent's OpenMP thread team, and hangs at its first parallel op when it has several threads;
    it cannot use CUDA once the parent has either. As with any spawned process, a script that
    calls ``run_study`` with several workers does so under ``if __name__ == "__main__":``.
    """
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(plan.to_dict(), store.url, str(out), threads, auto, stack, events, os.getpid(), workers),
            daemon=True,
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    ready = False
    try:
        while any(p.is_alive() for p in procs):
            _raise_for_failed(procs, (None, 0))
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if on_trial:
                on_trial(*event)
            if not ready:  # the workers have started: the waiting parent imports what the report needs
                _ready_to_report()
                ready = True
        _raise_for_failed(procs, (0,))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()


def _ready_to_report() -> None:
    """What the report imports (scipy.stats, matplotlib: ~1.4 s), imported by the parent while
    the workers train instead of after the last trial."""
    import scipy.stats  # noqa: F401

    from reglab.lab.study.figures import _plt

    _plt()


def _raise_for_failed(procs: list[Any], fine: tuple[int | None, ...]) -> None:
    """Raise for the first worker whose exit status is not in ``fine``: an internal error
    (``WorkerCrashed``) or a failure on bad input (``StudyError``)."""
    failed = [p for p in procs if p.exitcode not in fine]
    if not failed:
        return
    code = failed[0].exitcode
    if code == INTERNAL_EXIT:
        raise WorkerCrashed("a worker stopped on an internal error (its traceback is printed above)")
    raise StudyError(f"a worker exited with code {code} (its error is printed above); resume with the same command")
