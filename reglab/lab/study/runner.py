"""Running a study: workers claim grid points from the storage until none is left.

A worker loops: mark trials of dead workers as failed, enqueue the points that have no live or
finished trial, claim one, train it (``run_recipe`` into ``OUT/runs/ARM-seedS-HASH``, a
checkpoint every ``CHECKPOINT_EVERY`` epochs so that a killed trial resumes where it stopped),
and store its results. Once every single-technique arm is finished, the ``combination`` arm is
derived from their results (once, stored with the study) and enqueued. The same loop serves
one in-process worker, ``--workers N`` local processes (workers.py), and workers started on
other machines against one shared storage URL. With stacking (the default), a worker claims the
first waiting trial of a stack group (an arm's seeds) with the group's other waiting trials and
trains them as one stacked model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from optuna.trial import TrialState

from reglab.errors import InputError, WriteError, note
from reglab.lab.recipe import Recipe
from reglab.lab.run import differences, run_recipe
from reglab.lab.study.plan import COMBINATION, Plan
from reglab.lab.study.stats import combination_changes
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
    workers: int = 1,
) -> int:
    """Run trials until the study is complete; returns how many this worker ran. ``threads``
    ``"auto"``: each trial picks its threads from its model's size, within this worker's.
    ``stack``: the seeds of an arm whose recipe stacks form stack groups, fixed by the plan
    (``stack_group``: the arm's seeds in plan order, ``MAX_COPIES`` at a time; the combination's
    split over the ``workers`` this machine runs for the study, ``combination_stack``); a worker
    claims a group's first waiting trial only while no trial of the group runs, takes the group's
    other waiting trials with it and trains them as one stacked model. Which trials stack
    together thus depends on the plan and the stored states alone, never on the workers' timing."""
    ran = 0
    stackable: dict[str, bool] = {}
    while True:
        trials = store.trials()  # one read per round, shared by the steps below
        if store.reap(trials):
            trials = store.trials()
        done = store.completed(trials)
        points = grid(plan, store, done)
        if store.enqueue_missing(points, trials):
            trials = store.trials()
        candidates = group_leaders(plan, store, trials, stackable, workers) if stack else trials
        trial = store.claim(candidates, choices={"arm": plan.arm_names, "seed": list(plan.seeds)})
        if trial is None:
            if all(p in done for p in points):  # grid() adds the combination once the rest is done
                store.drop_spares(trials, done)
                return ran
            if plan.combination:
                _ready_to_derive()
            time.sleep(POLL)  # other workers are running the remaining trials
            continue
        group = [trial, *(same_group(plan, store, trials, trial, out, stackable, workers) if stack else [])]
        for t in group:
            if on_trial:
                on_trial(*key_of(t), "start")
        with last_arm_threads(plan, store, *key_of(trial), threads, stack, stackable, workers):
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
    stackable: dict[str, bool],
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
    if stack and arm_stacks(plan, store, arm, seed, stackable):
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


def stack_group(plan: Plan, arm: str, seed: int, size: int | None = None) -> tuple[str, int]:
    """The stack group of a grid point: its arm and which ``size`` (default ``MAX_COPIES``) of
    the plan's seeds."""
    from reglab.lab.stack import MAX_COPIES

    return arm, list(plan.seeds).index(seed) // (size or MAX_COPIES)


def combination_stack(plan: Plan, store: StudyStore, workers: int = 1) -> int:
    """How many of the combination's seeds train as one stacked model. The combination runs once
    every other trial is complete, when a single group would leave the other workers' cores idle:
    its seeds are split into as many groups as this machine runs workers for the study (at most
    one per seed; ``MAX_COPIES`` seeds a group at most): with 2 workers, seeds 0-1 stacked and
    seed 2 alone. The size is fixed by the first worker that groups them and stored with the
    study, so every worker, here or on another machine, groups them alike."""
    from reglab.lab.stack import MAX_COPIES

    attrs = store.attrs()
    if "combination_stack" not in attrs:
        seeds = len(plan.seeds)
        store.set_attr("combination_stack", min(MAX_COPIES, -(-seeds // max(1, min(workers, seeds)))))
        attrs = store.attrs()
    return attrs["combination_stack"]


def _group_of(plan: Plan, store: StudyStore, workers: int):
    """``stack_group`` with each arm's group size (the combination's from ``combination_stack``,
    read from the storage at most once)."""
    sizes: dict[str, int] = {}

    def group(arm: str, seed: int) -> tuple[str, int]:
        if arm == COMBINATION and arm not in sizes:
            sizes[arm] = combination_stack(plan, store, workers)
        return stack_group(plan, arm, seed, sizes.get(arm))

    return group


def group_leaders(
    plan: Plan, store: StudyStore, trials: list[Any], stackable: dict[str, bool], workers: int = 1
) -> list[Any]:
    """The waiting trials a worker may claim: every trial of an arm that does not stack; of an
    arm that stacks, the first waiting trial of each group none of whose trials is running
    (``stackable``: arm -> whether its recipe stacks, filled in as arms are met)."""
    group_of = _group_of(plan, store, workers)
    running = {group_of(*key_of(t)) for t in trials if t.state == TrialState.RUNNING}
    order = list(plan.seeds)
    first: dict[tuple[str, int], Any] = {}
    out = []
    for t in trials:
        if t.state != TrialState.WAITING:
            continue
        arm, seed = key_of(t)
        if not arm_stacks(plan, store, arm, seed, stackable):
            out.append(t)
            continue
        group = group_of(arm, seed)
        if group in running:
            continue
        if group not in first or order.index(seed) < order.index(key_of(first[group])[1]):
            first[group] = t
    return out + sorted(first.values(), key=lambda t: t.number)


def arm_stacks(plan: Plan, store: StudyStore, arm: str, seed: int, stackable: dict[str, bool]) -> bool:
    """Whether the arm's recipe trains stacked (``recipe_problem``), found once per arm and kept
    in ``stackable``; a recipe that cannot be built does not (run_trial reports it)."""
    from reglab.lab.stack import recipe_problem

    if arm not in stackable:
        try:
            stackable[arm] = recipe_problem(recipe_for(plan, store, arm, seed)) is None
        except InputError:
            stackable[arm] = False
    return stackable[arm]


def same_group(
    plan: Plan,
    store: StudyStore,
    trials: list[Any],
    first: Any,
    out: Path,
    stackable: dict[str, bool],
    workers: int = 1,
) -> list[Any]:
    """Claim the other waiting trials of ``first``'s stack group, in seed order, when they can
    train stacked: a recipe that stacks and no run folder to resume from (a trial that died
    part-way resumes on its own); else none."""
    arm, seed = key_of(first)
    if not arm_stacks(plan, store, arm, seed, stackable) or started(plan, store, out, arm, seed):
        return []
    group_of = _group_of(plan, store, workers)
    group = group_of(arm, seed)
    order = list(plan.seeds)
    members = [
        t
        for t in trials
        if t.state == TrialState.WAITING and t.number != first.number and group_of(*key_of(t)) == group
    ]
    claimed = []
    for t in sorted(members, key=lambda t: order.index(key_of(t)[1])):
        if started(plan, store, out, *key_of(t)):
            continue
        got = store.claim([t], choices={"arm": plan.arm_names, "seed": order})
        if got is not None:
            claimed.append(got)
    return claimed


def started(plan: Plan, store: StudyStore, out: Path, arm: str, seed: int) -> bool:
    """Whether the point has a run folder with a checkpoint (a trial that died part-way): it
    resumes from there, one trial at a time."""
    return (run_dir(out, arm, seed, recipe_for(plan, store, arm, seed)) / "checkpoint.pt").exists()


def run_group(plan: Plan, store: StudyStore, group: list[Any], out: Path, threads: str | None = None) -> None:
    """The claimed trials of one stack group (``same_group``: their recipe stacks, none has a run
    to resume), trained stacked (``reglab.lab.stack``) and stored one by one."""
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
    for i, (t, (_, seed), result) in enumerate(zip(group, keys, results)):
        result.summary["stacked"] = seeds  # trained as one model with these seeds of its arm
        try:
            store.complete(t._trial_id, returned_valid_loss(result.summary, result.history), trial_attrs(result),
                           curve=[r["valid_loss"] for r in result.history])  # fmt: skip
        except WriteError as e:  # this and the group's later trials are left RUNNING, for the next reap
            for later in group[i + 1 :]:
                store.release(later._trial_id)
            raise StudyError(f"trial {arm} seed {seed} finished but could not be stored: {e}") from e
