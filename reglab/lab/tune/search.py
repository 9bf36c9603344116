"""The search: an Optuna study over a ``Space``, run by local workers or by workers on several
machines sharing one storage, then the best configuration confirmed on fresh seeds.

Each trial trains the base recipe with the trial's changes on the search seed (``SEARCH_SEED``)
and reports its validation loss every epoch (``trial.report``), so that the pruner can stop it;
its value is the validation loss of the model the run returns (the best epoch's with early
stopping, else the last), and the test set is never evaluated. Workers stop once the study holds
``trials`` finished trials (complete or pruned: ``MaxTrialsCallback``), or after ``timeout``
seconds. The storage runs Optuna's heartbeat: a trial whose worker died stops beating, is
failed by the next worker that starts a trial, and is enqueued again with its params
(``RetryFailedTrialCallback``), so a killed search loses no budget and re-running it resumes.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
import traceback
import warnings
from typing import Any

from reglab._checks import check_int
from reglab.errors import InputError, ReglabError
from reglab.lab.recipe import Recipe
from reglab.lab.study.storage import StorageError, open_storage, redact_url
from reglab.lab.tune.space import Space

SEARCH_SEED = 0  # every search trial: the same split, init and batch order; confirmation seeds differ
CONFIRM_SEEDS = (100, 101, 102, 103, 104)  # never used by the search
SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "halving", "none")
HEARTBEAT = 5  # seconds between a running trial's heartbeats
GRACE = 30  # a trial without a heartbeat for this long has lost its worker
METRIC = "validation loss"


def make_sampler(name: str, space: Space, seed: int = 0) -> Any:
    import optuna

    if name == "tpe":  # multivariate: the techniques' strengths interact
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=len(space.techniques) + 1, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":  # the switches are categorical: CMA-ES leaves them to its independent sampler
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    raise ReglabError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def make_pruner(name: str, epochs: int = 100) -> Any:
    """A pruner that judges a trial from a third of its epochs on: a regularized run learns more
    slowly at first and overtakes later (the baseline overfits from about epoch 17 of 100), so an
    earlier judgement would compare speed, not generalization."""
    import optuna

    warmup = max(5, epochs // 3)
    if name == "median":  # a trial worse than the median of the others at the same epoch is stopped
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ReglabError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")


def storage_for(url: str) -> Any:
    """The Optuna storage with a heartbeat and the retry of trials whose worker died."""
    import optuna

    storage = open_storage(url)
    storage.heartbeat_interval = HEARTBEAT
    storage.grace_period = GRACE
    retry = (
        getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    )
    with warnings.catch_warnings():  # Optuna marks its heartbeat retry experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage.failed_trial_callback = retry(max_retry=3)
    return storage


def open_search(url: str, name: str, base: Recipe, space: Space, sampler: str, pruner: str, seed: int = 0) -> Any:
    """Create the search's study (or attach to it, checking it searches the same space from the
    same base recipe)."""
    import optuna

    storage = storage_for(url)
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="minimize", load_if_exists=True,
            sampler=make_sampler(sampler, space, seed), pruner=make_pruner(pruner, base.training.epochs),
        )  # fmt: skip
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - a driver error: the storage's trouble
        raise StorageError(f"cannot open the search {name!r} in {redact_url(url)}: {e}") from None
    mine = {"space": space.to_dict(), "base": base.to_dict()}
    stored = {k: study.user_attrs.get(k) for k in mine}
    if stored["space"] is None:
        for k, v in mine.items():
            study.set_user_attr(k, v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC])
    elif _json(stored) != _json(mine):
        what = "space" if _json(stored["space"]) != _json(mine["space"]) else "base recipe"
        raise StorageError(
            f"the storage holds a search named {name!r} over another {what}; resume it with the same options, "
            "or give another --name or --out"
        )
    return study


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


class _Report:
    """Reports each epoch's validation loss to the trial; stops it when the pruner says so."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        import optuna

        value = record["valid_loss"]
        self.trial.report(value if math.isfinite(value) else float("inf"), record["epoch"])
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record['epoch']} (validation loss {value:.4g})")


class OverBudget(Exception):
    """A trial started after the budget was taken by trials numbered before it: not run."""


def _check_budget(trial: Any, trials: int | None) -> None:
    """Exactly ``trials`` trials run in all: a trial runs only if fewer than ``trials`` trials
    numbered before it are live or finished (trial numbers are given out atomically by the
    storage, so two workers never both take the last place)."""
    from optuna.trial import TrialState

    if trials is None:
        return
    before = [
        t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number and t.state != TrialState.FAIL
    ]
    if len(before) >= trials:
        trial.set_user_attr("over_budget", True)
        trial.study.stop()
        raise OverBudget(f"the budget of {trials} trials is taken")


def reap(study: Any) -> int:
    """Fail the running trials whose worker process on this machine is gone, and enqueue their
    params again (a worker elsewhere is found by Optuna's heartbeat instead); returns how many."""
    from optuna.trial import TrialState

    from reglab.lab.study.leases import lease_is_dead, process_identity

    me = process_identity()
    reaped = 0
    unknown = False
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lease = t.user_attrs.get("worker")
        local = lease and all(lease.get(k) == me[k] for k in ("host", "boot", "pidns"))
        if local and lease_is_dead(lease, now=0.0, started=None):
            _retry(study, t)
            reaped += 1
        unknown = unknown or not lease
    if unknown:  # killed before it said who runs it: a live trial says so within milliseconds of its start
        time.sleep(2 * HEARTBEAT + 1)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "worker" not in t.user_attrs:
                _retry(study, t)
                reaped += 1
    return reaped


def _retry(study: Any, trial: Any) -> None:
    """Fail a trial whose worker is gone and enqueue its params again (its budget is not lost)."""
    from optuna.trial import TrialState

    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)


def objective(base: Recipe, space: Space, trials: int | None = None) -> Any:
    """The function Optuna minimizes: train the trial's recipe on the search seed, never
    touching the test set; the value is the returned model's validation loss."""
    from reglab.lab.build import build
    from reglab.lab.study.leases import process_identity
    from reglab.lab.study.trials import returned_valid_loss

    def run(trial: Any) -> float:
        trial.set_user_attr("worker", process_identity())  # first: who runs it, should it be killed
        _check_budget(trial, trials)
        changes = space.suggest(trial)
        trial.set_user_attr("changes", changes)
        recipe = base.updated({**changes, "training.seed": SEARCH_SEED})
        trainer = build(recipe, callbacks=[_Report(trial)])
        trainer.fit()
        stopper = next((cb for cb in trainer.callbacks if hasattr(cb, "best_epoch") and cb.restore_best), None)
        summary = {"restored_epoch": stopper.best_epoch if stopper is not None else None}
        trial.set_user_attr("epochs", trainer.epoch)
        return returned_valid_loss(summary, list(trainer.history))

    return run


def search(study: Any, base: Recipe, space: Space, trials: int | None, timeout: float | None) -> None:
    """Run trials in this process until the study holds ``trials`` finished ones (or ``timeout``)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    callbacks = [MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))] if trials else []
    if trials and finished(study) >= trials:
        return
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a trial over the budget is failed, on purpose, quietly
    study.optimize(objective(base, space, trials), timeout=timeout, callbacks=callbacks, catch=(OverBudget,),
                   gc_after_trial=False)  # fmt: skip


def finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _worker(args: dict[str, Any], index: int, parent: int) -> None:
    import torch

    from reglab.lab.study.workers import _die_with_parent

    _die_with_parent(parent)
    torch.set_num_threads(args["threads"])
    try:
        base = Recipe.from_dict(args["base"])
        study = open_search(args["url"], args["name"], base, args["space"], args["sampler"], args["pruner"], index)
        search(study, base, args["space"], args["trials"], args["timeout"])
    except KeyboardInterrupt:
        sys.exit(130)
    except InputError as e:
        print(f"reglab: worker {os.getpid()}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        sys.exit(3)


def run_search(
    url: str,
    name: str,
    base: Recipe,
    space: Space,
    *,
    trials: int | None,
    timeout: float | None,
    workers: int,
    threads: int,
    sampler: str,
    pruner: str,
) -> Any:
    """The search with ``workers`` processes (spawned, each with its own sampler seed and
    ``threads`` torch threads); returns the study."""
    import torch

    check_int("workers", workers, low=1)
    study = open_search(url, name, base, space, sampler, pruner)
    reap(study)  # a search killed on this machine: its running trials run again
    if not study.get_trials(deepcopy=False) and sampler != "grid":
        for params in space.starting_points()[: trials or None]:  # once, by whoever creates the search
            study.enqueue_trial(params, user_attrs={"start": True})
    if workers == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            search(study, base, space, trials, timeout)
        finally:
            torch.set_num_threads(before)
        return study
    args = {"url": url, "name": name, "base": base.to_dict(), "space": space, "sampler": sampler, "pruner": pruner,
            "trials": trials, "timeout": timeout, "threads": threads}  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(args, i, os.getpid()), daemon=True) for i in range(workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    codes = [p.exitcode for p in procs]
    if any(c == 3 for c in codes):
        raise RuntimeError("a search worker stopped on an internal error (its traceback is printed above)")
    if any(c not in (0, None) for c in codes):
        from reglab.lab.study.runner import StudyError

        raise StudyError(f"a search worker exited with code {max(codes)} (its error is printed above); run the "
                         "same command again to resume")  # fmt: skip
    return study


def best_changes(study: Any, space: Space) -> dict[str, Any]:
    """The recipe changes of the best complete trial."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise ReglabError("the search has no complete trial yet: run it with more --trials or a longer --timeout")
    best = min(done, key=lambda t: (t.value if t.value is not None else math.inf, t.number))
    return space.changes_of(best.params)


def check_budget(trials: int | None, timeout: float | None) -> None:
    if trials is None and timeout is None:
        raise ReglabError("give the search a budget: --trials N or --timeout SECONDS")
    if trials is not None:
        check_int("--trials", trials, low=1)
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0 or not math.isfinite(timeout)):
        raise ReglabError(f"--timeout must be a positive number of seconds, got {timeout!r}")
