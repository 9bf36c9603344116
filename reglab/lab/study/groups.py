"""Stack groups: which waiting trials of a study a worker trains as one stacked model.

A group is fixed by the plan and by what is stored with the study, never by the workers'
timing: the seeds of an arm, with those of the arms of its stack key (``reglab.lab.stack``:
the same recipe but for the seed, what the batches go through, early stopping and the optimizer's
weight decay and proximal L1) as far as the device has room (``stack_room``), in plan order; the
combination's seeds split over the workers (``combination_stack``). A worker offers only a group's
first waiting trial while none of the group runs (``group_leaders``), the groups of more copies
first, and claims the rest with it (``same_group``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from reglab.errors import InputError
from reglab.lab.study.plan import COMBINATION, Plan
from reglab.lab.study.points import recipe_for, started
from reglab.lab.study.storage import StudyStore, key_of


def stack_group(
    plan: Plan, arm: str, seed: int, size: int | None = None, family: Sequence[str] | None = None
) -> tuple[str, int]:
    """The stack group of a grid point, ``(its first arm, index)``, of ``size`` copies at most
    (default ``MAX_COPIES``). ``family``: the plan's arms that train stacked with ``arm`` (one
    ``stack_key``: they differ only in seed, batches, early stopping, decay), in plan order
    (default: ``arm`` alone). Where two or more arms' seeds fit in a group, a group is as many
    whole arms as fit (``size // seeds``); else each arm's seeds in plan order, ``size`` at a time."""
    from reglab.lab.stack import MAX_COPIES

    size, seeds, family = size or MAX_COPIES, list(plan.seeds), list(family or [arm])
    per = size // len(seeds)  # whole arms a group holds
    if per <= 1:
        return arm, seeds.index(seed) // size
    first = family.index(arm) // per * per
    return family[first], 0


def stack_room(plan: Plan, store: StudyStore) -> int:
    """How many copies one stack group holds (``reglab.lab.stack.room``: 6 on CPU, more on a
    GPU), from the device of the plan's base recipe; fixed by the first worker that groups
    trials and stored with the study, so every worker groups them alike."""
    from reglab.lab.build import resolve_device
    from reglab.lab.stack import MAX_COPIES, room

    attrs = store.attrs()
    if "stack_room" not in attrs:
        try:
            size = room(resolve_device(plan.base.training.device))
        except InputError:  # the device is missing here: each trial says so when it runs
            size = MAX_COPIES
        store.set_attr("stack_room", size)
        attrs = store.attrs()
    return attrs["stack_room"]


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


def _group_of(plan: Plan, store: StudyStore, workers: int, families: dict[str, str | None]):
    """``stack_group`` of a point of an arm that stacks: the combination's in groups of
    ``combination_stack`` (it runs alone, at the end), every other arm's with the arms of its
    stack key, ``stack_room`` copies a group (both read from the storage at most once)."""
    sizes: dict[str, int] = {}  # "combination" and "room", read at the first need
    members: dict[str, list[str]] = {}

    def group(arm: str, seed: int) -> tuple[str, int] | None:
        if arm == COMBINATION:
            if "combination" not in sizes:
                sizes["combination"] = combination_stack(plan, store, workers)
            return stack_group(plan, arm, seed, sizes["combination"])
        key = arm_family(plan, store, arm, seed, families)
        if key is None:
            return None
        if key not in members:
            members[key] = [a for a in plan.arm_names
                            if a != COMBINATION and arm_family(plan, store, a, seed, families) == key]  # fmt: skip
        if "room" not in sizes:
            sizes["room"] = stack_room(plan, store)
        return stack_group(plan, arm, seed, sizes["room"], members[key])

    return group


def _plan_order(plan: Plan):
    """A grid point's place in the plan: its arm's, then its seed's."""
    arms, seeds = list(plan.arm_names), list(plan.seeds)
    return lambda t: (arms.index(key_of(t)[0]), seeds.index(key_of(t)[1]))


def group_leaders(
    plan: Plan, store: StudyStore, trials: list[Any], families: dict[str, str | None], workers: int = 1
) -> list[Any]:
    """The waiting trials a worker may claim: every trial of an arm that does not stack; of an
    arm that stacks, the first waiting trial (in plan order) of each group none of whose trials
    is running (``families``: arm -> its stack key, or None where it does not stack, filled in
    as arms are met). Groups of more copies come first, plan order between equals: the longest
    first, so that the study does not end on a large group while the other workers idle (one
    default study's group times on 2 workers, in this order: 98 s to the combination instead of
    106 s, BENCHMARKS.md). The order decides only when a group trains, never which trials it
    holds."""
    group_of = _group_of(plan, store, workers, families)
    running = {group_of(*key_of(t)) for t in trials if t.state == TrialState.RUNNING}
    place = _plan_order(plan)
    first: dict[tuple[str, int], Any] = {}
    out = []
    for t in trials:
        if t.state != TrialState.WAITING:
            continue
        arm, seed = key_of(t)
        if not arm_stacks(plan, store, arm, seed, families):
            out.append(t)
            continue
        group = group_of(arm, seed)
        if group in running:
            continue
        if group not in first or place(t) < place(first[group]):
            first[group] = t
    if not first:
        return out
    planned = {key_of(t) for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)}
    sizes = Counter(group_of(*k) for k in planned if arm_stacks(plan, store, *k, families))
    return out + sorted(first.values(), key=lambda t: (-sizes[group_of(*key_of(t))], t.number))


def arm_family(plan: Plan, store: StudyStore, arm: str, seed: int, families: dict[str, str | None]) -> str | None:
    """The arm's stack key (``reglab.lab.stack.stack_key``) where its recipe trains stacked
    (``recipe_problem``), else None; found once per arm and kept in ``families``. A recipe that
    cannot be built does not stack (run_trial reports it)."""
    from reglab.lab.stack import recipe_problem, stack_key

    if arm not in families:
        try:
            recipe = recipe_for(plan, store, arm, seed)
            families[arm] = stack_key(recipe) if recipe_problem(recipe) is None else None
        except InputError:
            families[arm] = None
    return families[arm]


def arm_stacks(plan: Plan, store: StudyStore, arm: str, seed: int, families: dict[str, str | None]) -> bool:
    """Whether the arm's recipe trains stacked (``arm_family``)."""
    return arm_family(plan, store, arm, seed, families) is not None


def same_group(
    plan: Plan,
    store: StudyStore,
    trials: list[Any],
    first: Any,
    out: Path,
    families: dict[str, str | None],
    workers: int = 1,
) -> list[Any]:
    """Claim the other waiting trials of ``first``'s stack group, in plan order, when they can
    train stacked: a recipe that stacks and no run folder to resume from (a trial that died
    part-way resumes on its own); else none."""
    arm, seed = key_of(first)
    if not arm_stacks(plan, store, arm, seed, families) or started(plan, store, out, arm, seed):
        return []
    group_of = _group_of(plan, store, workers, families)
    group = group_of(arm, seed)
    members = [
        t
        for t in trials
        if t.state == TrialState.WAITING and t.number != first.number and group_of(*key_of(t)) == group
    ]
    claimed = []
    for t in sorted(members, key=_plan_order(plan)):
        if started(plan, store, out, *key_of(t)):
            continue
        got = store.claim([t], choices={"arm": plan.arm_names, "seed": list(plan.seeds)})
        if got is not None:
            claimed.append(got)
    return claimed
