"""``reglab tune``: how strong each cure should be, searched with Optuna, proven on fresh seeds.

>>> from reglab.lab.tune import make_space, run_tune                  # doctest: +SKIP
>>> result = run_tune(Recipe(), make_space(Recipe()), "runs/tune", trials=40, workers=2)  # doctest: +SKIP

``run_tune`` searches the space (``reglab.lab.tune.space``) on validation loss only
(``reglab.lab.tune.search``), writes the best configuration as ``OUT/best.toml`` (a recipe for
``reglab train --recipe``), trains it on fresh seeds next to the baseline and the best single arm
of the default study at its default strength (a study, ``OUT/confirm``, with the study's paired
rule), and writes ``OUT/report.html``. Re-running the same call resumes the search and the
confirmation; ``OUT/tune.db`` holds both unless a storage URL is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reglab._checks import check_folder
from reglab._files import atomic_write, make_folder
from reglab.errors import ReglabError
from reglab.lab.recipe import Recipe
from reglab.lab.run import finite
from reglab.lab.study.arms import ARMS, COMBINATION
from reglab.lab.tune.search import (
    CONFIRM_SEEDS,
    PRUNERS,
    SAMPLERS,
    best_changes,
    check_budget,
    make_pruner,
    make_sampler,
    run_search,
)
from reglab.lab.tune.space import DEFAULT_TECHNIQUES, TECHNIQUES, Space, make_space

__all__ = ["DEFAULT_TECHNIQUES", "PRUNERS", "SAMPLERS", "TECHNIQUES", "load_tune_file", "make_space", "run_tune"]

DEFAULT_NAME = "tune"
AGAINST = "shift"  # the best single arm of the default study (BENCHMARKS.md: test loss 0.665 at shift 4)


def tune_url(out: Path) -> str:
    return f"sqlite:///{out.resolve() / 'tune.db'}"


def run_tune(
    base: Recipe,
    space: Space,
    out: str | Path,
    *,
    trials: int | None = 60,
    timeout: float | None = None,
    workers: int = 1,
    threads: int | None = None,
    storage: str | None = None,
    name: str = DEFAULT_NAME,
    sampler: str = "tpe",
    pruner: str = "median",
    confirm_seeds: tuple[int, ...] = CONFIRM_SEEDS,
    against: str = AGAINST,
) -> dict[str, Any]:
    """Search, write best.toml, confirm, report; returns what the report says (dict)."""
    from reglab.lab.study import make_plan, run_study
    from reglab.lab.study.workers import thread_share
    from reglab.lab.tune.search import SEARCH_SEED

    check_budget(trials, timeout)
    make_sampler(sampler, space)  # an unknown name fails now
    make_pruner(pruner)
    if against not in ARMS or against in ("baseline", COMBINATION):
        raise ReglabError(f"--against must be one of the default study's single arms, got {against!r}")
    if SEARCH_SEED in confirm_seeds:
        raise ReglabError(f"the confirmation seeds must not include the search seed {SEARCH_SEED}")
    out = check_folder("out", out)
    make_plan(
        base, arms=["baseline", against, "tuned"], overrides={"tuned": {}}, seeds=confirm_seeds, name=f"{name}-confirm"
    )  # fmt: skip  (the confirmation's arms and seeds, checked now)
    make_folder(out)
    url = storage or tune_url(out)
    threads = thread_share(workers) if threads is None else threads
    study = run_search(url, name, base, space, trials=trials, timeout=timeout, workers=workers, threads=threads,
                       sampler=sampler, pruner=pruner)  # fmt: skip
    best = best_changes(study, space)
    tuned = base.updated(best)
    tuned.save(out / "best.toml", header=f"reglab tune: the best configuration of the search {name!r}")
    plan = make_plan(base, arms=["baseline", against, "tuned"], overrides={"tuned": best}, seeds=confirm_seeds,
                     name=f"{name}-confirm")  # fmt: skip
    board = run_study(plan, out / "confirm", storage=storage, workers=workers, threads=threads)
    from reglab.lab.tune.report import write_tune_report

    result = write_tune_report(study, space, base, best, plan, board, out, against)
    atomic_write(out / "tune.json", json.dumps(finite(result), indent=1))
    return result


def load_tune_file(path: str | Path, base: Recipe) -> dict[str, Any]:
    """A tune TOML file: ``techniques = [...]`` and a ``[space]`` table; returns ``make_space``'s
    keyword arguments."""
    from reglab.lab.recipe import read_toml

    path = Path(path)
    d = read_toml(path, "tune file")
    allowed = {"techniques", "space"}
    extra = sorted(set(d) - allowed)
    try:
        if extra:
            raise ReglabError(f"unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")
        return {"techniques": d.get("techniques"), "ranges": d.get("space", {})}
    except ReglabError as e:
        raise e.within(f"tune file {path}") from None
