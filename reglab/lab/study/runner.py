"""Running a study: workers claim grid points from the storage until none is left.

A worker loops: mark trials of dead workers as failed, enqueue the points that have no live or
finished trial, claim one, train it (``run_recipe`` into ``OUT/runs/ARM-seedS-HASH``, a
checkpoint every ``CHECKPOINT_EVERY`` epochs so that a killed trial resumes where it stopped),
and store its results. Once every single-technique arm is finished, the ``combination`` arm is
derived from their results (once, stored with the study) and enqueued. The same loop serves
one in-process worker, ``--workers N`` local processes (workers.py), and workers started on
other machines against one shared storage URL. With stacking (the default), a worker claims the
first waiting trial of a stack group (an arm's seeds, and the seeds of the arms that differ from
it only in what their batches go through and in early stopping, as many as the device has room
for) with the group's other waiting trials and trains them as one stacked model.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reglab.errors import InputError, WriteError, note
from reglab.lab.run import differences, run_recipe
from reglab.lab.study.groups import arm_stacks, combination_stack, group_leaders, same_group
from reglab.lab.study.plan import COMBINATION, Plan
from reglab.lab.study.points import grid, recipe_for, run_dir
from reglab.lab.study.storage import StorageError, StudyStore, key_of
from reglab.lab.study.trials import returned_valid_loss, trial_attrs

CHECKPOINT_EVERY = 10  # epochs between a trial's checkpoints
POLL = 0.25  # seconds an idle worker waits before looking for work again (the combination's trials
# appear when another worker has derived it: a long wait leaves a core idle at that moment)


class StudyError(InputError, RuntimeError):
    """A trial or a worker failed on its input; the study can be resumed once the cause is fixed."""


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


def work(
    plan: Plan,
    store: StudyStore,
    out: Path,
    on_trial: Callable[[str, int, str], None] | None = None,
    threads: str | None = None,
    stack: bool = False,
    workers: int = 1,
) -> int:
    """Run trials until the study is complete; returns how many this worker ran. ``threads``
    ``"auto"``: each trial picks its threads from its model's size, within this worker's.
    ``stack``: the seeds of the arms whose recipes stack form stack groups, fixed by the plan
    (``stack_group``: whole arms of one stack key, as many as ``stack_room`` holds, or an arm's
    seeds in plan order, ``stack_room`` at a time; the combination's split over the ``workers``
    this machine runs for the study, ``combination_stack``); a worker
    claims a group's first waiting trial only while no trial of the group runs, takes the group's
    other waiting trials with it and trains them as one stacked model. Which trials stack
    together thus depends on the plan and the stored states alone, never on the workers' timing."""
    ran = 0
    families: dict[str, str | None] = {}  # arm -> its stack key (None: it does not stack)
    while True:
        trials = store.trials()  # one read per round, shared by the steps below
        if store.reap(trials):
            trials = store.trials()
        done = store.completed(trials)
        points = grid(plan, store, done)
        if store.enqueue_missing(points, trials):
            trials = store.trials()
        candidates = group_leaders(plan, store, trials, families, workers) if stack else trials
        trial = store.claim(candidates, choices={"arm": plan.arm_names, "seed": list(plan.seeds)})
        if trial is None:
            if all(p in done for p in points):  # grid() adds the combination once the rest is done
                store.drop_spares(trials, done)
                return ran
            if plan.combination:
                _ready_to_derive()
            time.sleep(POLL)  # other workers are running the remaining trials
            continue
        group = [trial, *(same_group(plan, store, trials, trial, out, families, workers) if stack else [])]
        for t in group:
            if on_trial:
                on_trial(*key_of(t), "start")
        with last_arm_threads(plan, store, *key_of(trial), threads, stack, families, workers):
            if len(group) > 1:
                run_group(plan, store, group, out, threads)
            else:
                run_trial(plan, store, trial, out, threads)
        ran += len(group)
        for t in group:
            if on_trial:
                on_trial(*key_of(t), "done")


def _ready_to_derive() -> None:
    """An idle worker imports what deriving the combination needs (scipy.stats: 0.7 s) while it
    waits, so that it derives and enqueues the combination as soon as the last arm is stored."""
    import scipy.stats  # noqa: F401


@contextlib.contextmanager
def last_arm_threads(
    plan: Plan,
    store: StudyStore,
    arm: str,
    seed: int,
    threads: str | None,
    stack: bool,
    families: dict[str, str | None],
    workers: int = 1,
):
    """The combination's trials run once every other trial is complete, so the cores that the
    other workers of this machine trained on are idle then: with ``threads="auto"``, each of
    the combination's units (its stack groups, or its trials) may use ``cores // units`` threads,
    at least the worker's own share, as the ceiling of its choice (``reglab.train.threads``).
    The number depends on the plan and the machine's cores, not on the workers' timing."""
    if threads != "auto" or arm != COMBINATION:
        yield
        return
    from reglab.train.threads import cores

    units = len(plan.seeds)
    if stack and arm_stacks(plan, store, arm, seed, families):
        units = -(-units // combination_stack(plan, store, workers))
    before = torch.get_num_threads()
    torch.set_num_threads(max(before, cores() // units))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def run_group(plan: Plan, store: StudyStore, group: list[Any], out: Path, threads: str | None = None) -> None:
    """The claimed trials of one stack group (``same_group``: their recipes share a stack key,
    none has a run to resume), trained stacked (``reglab.lab.stack``) and stored one by one;
    each records the seeds of its arm it trained with (``stacked``) and, where other arms
    trained with it, the group's arms (``stacked_arms``)."""
    from reglab.lab.stack import run_stacked

    keys = [key_of(t) for t in group]
    arms = list(dict.fromkeys(arm for arm, _ in keys))
    what = ", ".join(f"{a} (seeds {[s for b, s in keys if b == a]})" for a in arms)
    try:
        recipes = [recipe_for(plan, store, arm, seed) for arm, seed in keys]
    except BaseException as e:
        for t in group:
            store.fail(t._trial_id, f"{type(e).__name__}: {e}")
        raise
    folders = [run_dir(out, arm, seed, r) for (arm, seed), r in zip(keys, recipes)]
    try:
        with contextlib.ExitStack() as leases:
            for t in group:
                leases.enter_context(store.leased(t._trial_id))
            results = run_stacked(recipes, folders, threads)
    except BaseException as e:
        for t in group:
            store.fail(t._trial_id, f"{type(e).__name__}: {e}")
        if isinstance(e, InputError):
            raise StudyError(f"the stacked trials of {what} failed: {e}") from e
        note(e, f"in the stacked trials of {what}")
        raise
    for i, (t, (arm, seed), result) in enumerate(zip(group, keys, results)):
        result.summary["stacked"] = [s for a, s in keys if a == arm]  # trained as one model with these seeds of its arm
        if len(arms) > 1:
            result.summary["stacked_arms"] = arms  # and with these arms' seeds
        try:
            store.complete(t._trial_id, returned_valid_loss(result.summary, result.history), trial_attrs(result),
                           curve=[r["valid_loss"] for r in result.history])  # fmt: skip
        except WriteError as e:  # this and the group's later trials are left RUNNING, for the next reap
            for later in group[i + 1 :]:
                store.release(later._trial_id)
            raise StudyError(f"trial {arm} seed {seed} finished but could not be stored: {e}") from e
