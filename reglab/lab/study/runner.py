"""Running a study: workers claim grid points from the storage until none is left.

A worker loops: mark trials of dead workers as failed, enqueue the points that have no live or
finished trial, claim one, train it (``run_recipe`` into ``OUT/runs/ARM-seedS-HASH``, a
checkpoint every ``CHECKPOINT_EVERY`` epochs so that a killed trial resumes where it stopped),
and store its results. Once every single-technique arm is finished, the ``combination`` arm is
derived from their results (once, stored with the study) and enqueued. The same loop serves
one in-process worker, ``--workers N`` local processes, and workers started on other machines
against one shared storage URL.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reglab.errors import InputError, WriteError, note
from reglab.lab.recipe import Recipe
from reglab.lab.run import differences, finite, run_recipe
from reglab.lab.study.plan import COMBINATION, Plan
from reglab.lab.study.stats import combination_changes
from reglab.lab.study.storage import StorageError, StudyStore, key_of
from reglab.regularize.weights import weights

CHECKPOINT_EVERY = 10  # epochs between a trial's checkpoints
MAX_COLUMNS = 4096  # a first layer with more inputs keeps no per-input column norms (Fashion-MNIST has 784)
POLL = 0.25  # seconds an idle worker waits before looking for work again (the combination's trials
# appear when another worker has derived it: a long wait leaves a core idle at that moment)


class StudyError(InputError, RuntimeError):
    """A trial or a worker failed on its input; the study can be resumed once the cause is fixed."""


class WorkerCrashed(RuntimeError):
    """A local worker ended with an internal error (its traceback is printed above)."""


INTERNAL_EXIT = 3  # a worker's exit status after an internal error (1: bad input, 130: interrupted)


def attach(plan: Plan, url: str) -> StudyStore:
    """Open the study in ``url`` and check that it runs this plan (or record the plan)."""
    store = StudyStore(url, plan.name)
    stored = store.attrs().get("plan")
    if stored is None:
        store.set_attr("plan", plan.to_dict())
        if plan.left_out:  # for the report: built-in arms that did not fit the data, and why
            store.set_attr("left_out", plan.left_out)
        return store
    old, current = _normalized(stored), json.loads(json.dumps(plan.to_dict()))
    if old != current:
        raise StorageError(
            f"the study {plan.name!r} in this storage was started with another plan "
            f"({_plan_differences(old, current)}); "
            "resume it with the same options, or give a new --name or --out"
        )
    return store


def _plan_differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What changed between two plans' dicts, in words: arms, seeds, arm strengths, base recipe."""
    said = []
    names = [[a["name"] for a in p["arms"]] for p in (old, new)]
    if names[0] != names[1]:
        said.append(f"arms: {', '.join(names[0])} -> {', '.join(names[1])}")
    else:
        said += [
            f"arm {a['name']}: {a['changes']} -> {b['changes']}" for a, b in zip(old["arms"], new["arms"]) if a != b
        ]
    if old["seeds"] != new["seeds"]:
        said.append(f"seeds: {', '.join(map(str, old['seeds']))} -> {', '.join(map(str, new['seeds']))}")
    if old["combination"] != new["combination"]:
        said.append(f"combination: {old['combination']} -> {new['combination']}")
    said += differences(old["base"], new["base"], prefix="base ")
    return "; ".join(said) or "arms, seeds or base recipe"


def _normalized(stored: dict[str, Any]) -> Any:
    """A stored plan as this version writes it: recipe fields added since it was stored take
    their defaults (which are what the stored trials ran), so a study resumes across versions."""
    try:
        return json.loads(json.dumps(Plan.from_dict(stored).to_dict()))
    except (KeyError, TypeError, ValueError):  # a field this version no longer knows, or a bad value
        return stored


def grid(plan: Plan, store: StudyStore, done: dict[tuple[str, int], Any]) -> list[tuple[str, int]]:
    """The points to run now: every arm × seed, and the combination's once the others are done
    (unless no arm helped: the combination of nothing would be the baseline again)."""
    points = [(a.name, s) for a in plan.arms for s in plan.seeds]
    if plan.combination and all(p in done for p in points) and combination(plan, store, done)["arms"]:
        points += [(COMBINATION, s) for s in plan.seeds]  # none helped: nothing to combine, nothing to run
    return points


def combination(plan: Plan, store: StudyStore, done: dict[tuple[str, int], Any] | None = None) -> dict[str, Any]:
    """The combination arm, derived from the finished arms once and kept with the study."""
    attrs = store.attrs()
    if "combination" not in attrs:
        done = store.completed() if done is None else done
        rows = [
            {"arm": arm, "seed": seed, **t.user_attrs["summary"]}
            for (arm, seed), t in done.items()
            if arm != COMBINATION
        ]
        store.set_attr("combination", combination_changes(plan, rows))
        attrs = store.attrs()
    return attrs["combination"]


def recipe_for(plan: Plan, store: StudyStore, arm: str, seed: int) -> Recipe:
    if arm == COMBINATION:
        base = plan.base.updated(combination(plan, store)["changes"])
        return base.updated({"training.seed": seed})
    return plan.recipe(arm, seed)


def run_dir(out: Path, arm: str, seed: int, recipe: Recipe) -> Path:
    digest = hashlib.sha256(json.dumps(recipe.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return out / "runs" / f"{arm}-seed{seed}-{digest}"


def work(
    plan: Plan,
    store: StudyStore,
    out: Path,
    on_trial: Callable[[str, int, str], None] | None = None,
    threads: str | None = None,
    stack: bool = False,
) -> int:
    """Run trials until the study is complete; returns how many this worker ran. ``threads``
    ``"auto"``: each trial picks its threads from its model's size, within this worker's.
    ``stack``: a claimed trial takes the other waiting seeds of its arm with it (up to
    ``reglab.lab.stack.MAX_COPIES``), trained as one stacked model where its recipe allows."""
    ran = 0
    while True:
        trials = store.trials()  # one read per round, shared by the steps below
        if store.reap(trials):
            trials = store.trials()
        done = store.completed(trials)
        points = grid(plan, store, done)
        if store.enqueue_missing(points, trials):
            trials = store.trials()
        trial = store.claim(trials, choices={"arm": plan.arm_names, "seed": list(plan.seeds)})
        if trial is None:
            if all(p in done for p in points):  # grid() adds the combination once the rest is done
                return ran
            time.sleep(POLL)  # other workers are running the remaining trials
            continue
        group = [trial, *(_same_arm(plan, store, trials, trial, out) if stack else [])]
        for t in group:
            if on_trial:
                on_trial(*key_of(t), "start")
        if len(group) > 1:
            run_group(plan, store, group, out, threads)
        else:
            run_trial(plan, store, trial, out, threads)
        ran += len(group)
        for t in group:
            if on_trial:
                on_trial(*key_of(t), "done")


def run_trial(plan: Plan, store: StudyStore, trial: Any, out: Path, threads: str | None = None) -> None:
    arm, seed = key_of(trial)
    trial_id = trial._trial_id
    try:
        recipe = recipe_for(plan, store, arm, seed)
        with store.leased(trial_id):
            result = run_recipe(
                recipe,
                run_dir(out, arm, seed, recipe),
                resume=True,
                plots=False,
                checkpoint_every=CHECKPOINT_EVERY,
                threads=threads,
            )
    except BaseException as e:
        store.fail(trial_id, f"{type(e).__name__}: {e}")
        if isinstance(e, InputError):
            raise StudyError(f"trial {arm} seed {seed} failed: {e}") from e
        note(e, f"in trial {arm} seed {seed}")  # an internal error keeps its type and traceback
        raise
    try:
        store.complete(
            trial_id,
            returned_valid_loss(result.summary, result.history),
            trial_attrs(result),
            curve=[r["valid_loss"] for r in result.history],
        )
    except WriteError as e:  # left RUNNING: the next run finds its worker gone and stores it from its checkpoint
        raise StudyError(f"trial {arm} seed {seed} finished but could not be stored: {e}") from e


def _same_arm(plan: Plan, store: StudyStore, trials: list[Any], first: Any, out: Path) -> list[Any]:
    """Claim the other waiting trials of ``first``'s arm, up to ``MAX_COPIES`` in all, when they
    can train stacked: a recipe that stacks, no run folder to resume from (else none)."""
    from optuna.trial import TrialState

    from reglab.lab.stack import MAX_COPIES, recipe_problem

    arm, seed = key_of(first)
    try:
        recipe = recipe_for(plan, store, arm, seed)
    except InputError:
        return []  # run_trial reports it
    if recipe_problem(recipe) or _started(plan, store, out, arm, seed):
        return []
    waiting = [t for t in trials if t.state == TrialState.WAITING and key_of(t)[0] == arm and t.number != first.number]
    claimed = []
    for t in waiting:
        if len(claimed) + 1 >= MAX_COPIES:
            break
        if _started(plan, store, out, *key_of(t)):
            continue
        got = store.claim([t], choices={"arm": plan.arm_names, "seed": list(plan.seeds)})
        if got is not None:
            claimed.append(got)
    return claimed


def _started(plan: Plan, store: StudyStore, out: Path, arm: str, seed: int) -> bool:
    """Whether the point has a run folder with a checkpoint (a trial that died part-way): it
    resumes from there, one trial at a time."""
    return (run_dir(out, arm, seed, recipe_for(plan, store, arm, seed)) / "checkpoint.pt").exists()


def run_group(plan: Plan, store: StudyStore, group: list[Any], out: Path, threads: str | None = None) -> None:
    """The claimed trials of one arm (``_same_arm``: their recipe stacks, none has a run to
    resume), trained stacked (``reglab.lab.stack``) and stored one by one."""
    import contextlib

    from reglab.lab.stack import run_stacked

    keys = [key_of(t) for t in group]
    try:
        recipes = [recipe_for(plan, store, arm, seed) for arm, seed in keys]
    except BaseException as e:
        for t in group:
            store.fail(t._trial_id, f"{type(e).__name__}: {e}")
        raise
    folders = [run_dir(out, arm, seed, r) for (arm, seed), r in zip(keys, recipes)]
    arm = keys[0][0]
    try:
        with contextlib.ExitStack() as leases:
            for t in group:
                leases.enter_context(store.leased(t._trial_id))
            results = run_stacked(recipes, folders, threads)
    except BaseException as e:
        for t in group:
            store.fail(t._trial_id, f"{type(e).__name__}: {e}")
        if isinstance(e, InputError):
            raise StudyError(f"the stacked trials of {arm} (seeds {[s for _, s in keys]}) failed: {e}") from e
        note(e, f"in the stacked trials of {arm}")
        raise
    seeds = [seed for _, seed in keys]
    for t, (_, seed), result in zip(group, keys, results):
        result.summary["stacked"] = seeds  # trained as one model with these seeds of its arm
        try:
            store.complete(t._trial_id, returned_valid_loss(result.summary, result.history), trial_attrs(result),
                           curve=[r["valid_loss"] for r in result.history])  # fmt: skip
        except WriteError as e:
            raise StudyError(f"trial {arm} seed {seed} finished but could not be stored: {e}") from e


def returned_valid_loss(summary: dict[str, Any], history: list[dict[str, Any]]) -> float:
    """Validation loss of the model the run returns (the restored best epoch's, or the last)."""
    epoch = summary.get("restored_epoch") or len(history)
    value = history[epoch - 1]["valid_loss"]
    return value if value == value else float("inf")


def trial_attrs(result: Any) -> dict[str, Any]:
    """What is kept with a trial: summary (with the returned model's validation loss and
    fractions of exactly-zero weights), per-epoch history, and the first layer's weights: a
    histogram, their root mean square and, for a Linear layer of at most ``MAX_COLUMNS`` inputs,
    the norm of each input's column (which inputs the model uses: feature selection)."""
    summary = dict(result.summary)
    history = list(result.history)
    summary["valid_loss"] = returned_valid_loss(summary, history)
    matrix = weights(result.model)[0].detach().double().cpu()
    first = matrix.flatten()  # zero fractions: in the summary
    first = first[first.isfinite()]  # a diverged run's weights may be NaN: histogram what is finite
    m = float(first.abs().max()) if len(first) else 0.0
    m = m or 1.0
    histogram = {
        "edges": torch.linspace(-m, m, 61).tolist(),
        "counts": torch.histc(first, bins=60, min=-m, max=m).tolist(),
        "zeros": int((first == 0).sum()),
        "rms": float(first.pow(2).mean().sqrt()) if len(first) else 0.0,  # sqrt(mean w²): does a penalty shrink?
    }
    if matrix.dim() == 2 and matrix.shape[1] <= MAX_COLUMNS:  # a Linear layer: weight on each input
        histogram["columns"] = matrix.norm(dim=0).tolist()  # ‖W[:, j]‖₂ per input j: which inputs are used
    return finite({"summary": summary, "history": history, "weights": histogram})


# -- local worker processes ----------------------------------------------------------------------
def thread_share(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


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
    plan_dict: dict[str, Any], url: str, out: str, threads: int, auto: bool, stack: bool, events: Any, parent: int
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
            args=(plan.to_dict(), store.url, str(out), threads, auto, stack, events, os.getpid()),
            daemon=True,
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            _raise_for_failed(procs, (None, 0))
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if on_trial:
                on_trial(*event)
        _raise_for_failed(procs, (0,))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()


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
