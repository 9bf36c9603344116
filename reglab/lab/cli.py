"""The ``reglab`` command.

    reglab study [NAME] [--list] [--config STUDY.toml] [--arms A,B,...] [--seeds N] [--workers N]
                 [--storage URL] [--name NAME] [--recipe FILE] [--dataset NAME|FILE] [--out DIR]
    reglab tune [--techniques A,B,...] [--config TUNE.toml] [--trials N | --timeout S] [--workers N]
                [--sampler tpe|random|cmaes|grid] [--pruner median|halving|none] [--out DIR] [recipe flags]
    reglab report DIR [--storage URL] [--name NAME]
    reglab train [--recipe FILE] [--dataset NAME|FILE] [--model KIND] [--epochs N] [--seed S]
                 [--set KEY=VALUE ...] [--out DIR] [--resume]

Flags override the recipe file (or the default recipe; for a study, its base recipe); each is a
recipe field's, declared with the field (``reglab.lab.flags``). ``--set section.field=VALUE``
reaches any recipe field, the value written as in TOML (``--set optimizer.options.betas=[0.9,0.99]``).
Bad input (an ``InputError``) ends with a one-line error and exit status 2; any other exception
is an internal error: its traceback is printed, with a request to report it, and the exit
status is 1. ``REGLAB_DEBUG=1`` shows the traceback of bad input too.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from reglab._checks import check_folder
from reglab._version import __version__
from reglab.errors import InputError, UsageError, WriteError
from reglab.lab.flags import add_recipe_flags, fields_help, flag_changes
from reglab.lab.recipe import Recipe, tomllib


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")


def _subparser(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, epilog=fields_help() if name != "report" else None,
                          formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reglab", description="See overfitting and compare the cures.")
    parser.add_argument("--version", action="version", version=f"reglab {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    train = _subparser(sub, "train", "train one recipe and diagnose over/underfitting")
    train.add_argument("--recipe", type=Path, help="recipe TOML file (default: the built-in recipe)")
    add_recipe_flags(train)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any recipe field, e.g. model.dropout=0.2 (the fields are listed below)")  # fmt: skip
    train.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder (default: runs/train)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--threads", type=int, help="torch intra-op threads (default: one per 50 MFLOP of a training "
                       "step, at most the CPU cores: 1 for the baseline MLP)")  # fmt: skip

    study = _subparser(sub, "study", "a built-in study of the course (default: the regularization ablation), over "
                       "seeds, with a report that checks the course's claims")  # fmt: skip
    study.add_argument("study", nargs="?", metavar="NAME",
                       help="built-in study: " + ", ".join(_study_names()) + " (default regularization; --list says "
                       "what each shows)")  # fmt: skip
    study.add_argument("--list", action="store_true", help="list the built-in studies, their claims and times")
    study.add_argument("--config", type=Path,
                       help="study TOML file: name, seeds, arms, [sweep], base recipe, arm strengths")  # fmt: skip
    study.add_argument("--arms", help="comma-separated arms (default: every arm that fits the data and loss); known: "
                       + ", ".join(_arm_names()))  # fmt: skip
    study.add_argument("--seeds", type=int, help="seeds per arm (default: the study's, 3 for most)")
    study.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    study.add_argument("--stack", action=argparse.BooleanOptionalAction, default=True,
                       help="train the waiting seeds of an arm, with those of the arms that differ from it only in "
                       "their batches as far as the device has room, as one stacked model (mlp recipes; equal to "
                       "separate runs to float rounding; on by default; --no-stack: one trial at a time)")  # fmt: skip
    study.add_argument("--threads", type=int, help="torch threads per worker (default: per trial, one per 50 MFLOP "
                       "of a training step, at most CPU cores // workers)")  # fmt: skip
    study.add_argument("--storage", help="Optuna storage URL shared by workers (default: OUT/study.db)")
    study.add_argument("--name", help="study name in the storage (default: the study file's, or the built-in study's)")
    study.add_argument("--recipe", type=Path, help="base recipe TOML file (default: the built-in recipe)")
    add_recipe_flags(study, study=True)
    study.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any base-recipe field (the fields are listed below)")  # fmt: skip
    study.add_argument("--out", type=Path, help="output folder (default: runs/NAME, the study's own)")
    study.add_argument("--quiet", action="store_true", help="no progress bar or table")

    tune = _subparser(sub, "tune", "search how strong each technique should be (Optuna), then confirm the best on "
                      "fresh seeds")  # fmt: skip
    tune.add_argument("--techniques", help="comma-separated techniques to search (default: those that beat the "
                      "baseline in the default study): " + ", ".join(_technique_names()))  # fmt: skip
    tune.add_argument("--config", type=Path, help="tune TOML file: techniques and a [space] table of ranges")
    tune.add_argument("--trials", type=int, help="finished trials to run, all workers together (default 60)")
    tune.add_argument("--timeout", type=float, help="stop searching after this many seconds (per worker)")
    tune.add_argument("--sampler", default="tpe", help="tpe (default), random, cmaes or grid")
    tune.add_argument("--pruner", default="median", help="median (default), halving or none")
    tune.add_argument("--confirm-seeds", type=int, default=5, help="fresh seeds of the confirmation (default 5)")
    tune.add_argument("--against", default="shift",
                      help="the single arm the tuned recipe is confirmed against (default shift, the default study's "
                      "best)")  # fmt: skip
    tune.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    tune.add_argument("--threads", type=int, help="torch threads per worker (default: CPU cores // workers)")
    tune.add_argument("--storage", help="Optuna storage URL shared by workers (default: OUT/tune.db)")
    tune.add_argument("--name", default="tune", help="the search's name in the storage (default tune)")
    tune.add_argument("--recipe", type=Path, help="base recipe TOML file (default: the built-in recipe)")
    add_recipe_flags(tune, study=True)
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any base-recipe field")
    tune.add_argument("--out", type=Path, default=Path("runs/tune"), help="output folder (default: runs/tune)")
    tune.add_argument("--quiet", action="store_true", help="no summary table")

    report = _subparser(sub, "report", "rebuild a study's report from its storage")
    report.add_argument("dir", type=Path, help="the study's output folder")
    report.add_argument("--storage", help="storage URL (default: the one the study used)")
    report.add_argument("--name", help="study name (default: the one the study used)")
    return parser


def _technique_names() -> list[str]:
    from reglab.lab.tune.space import TECHNIQUES

    return list(TECHNIQUES)


def _study_names() -> list[str]:
    from reglab.lab.study.chapters import STUDIES

    return list(STUDIES)


def _arm_names() -> list[str]:
    from reglab.lab.study.arms import ARMS

    return list(ARMS)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    changes = _changes(args)
    _implied(recipe, changes)
    return recipe.updated(changes) if changes else recipe


def _implied(recipe: Recipe, changes: dict[str, Any]) -> None:
    """Follow-on changes a user expects: a new model kind gets its default width, a regression
    data set a regression loss (mse) unless a loss was chosen."""
    from reglab.data import DATASETS

    if "model.kind" in changes and changes["model.kind"] != recipe.model.kind and "model.width" not in changes:
        changes["model.width"] = 0  # the new kind's default width
    name = changes.get("data.name")
    real = name in DATASETS and DATASETS[name].targets == "real"
    if real and "training.loss" not in changes and not recipe.training.regression:
        changes["training.loss"] = "mse"


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = flag_changes(args)
    if "early_stopping.patience" in changes:  # --patience N is asked for only to stop early
        changes.setdefault("early_stopping.enabled", True)
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        changes[key.strip()] = _parse_value(text.strip())
    return changes


def _parse_value(text: str) -> Any:
    """A TOML value (``0.1``, ``true``, ``[0.9, 0.99]``, ``"adam"``), or else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def cmd_train(args: argparse.Namespace) -> int:
    from reglab.lab.run import run_recipe

    check_folder("--out", args.out)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    checkpoint = args.out / "checkpoint.pt"
    if args.resume and checkpoint.exists() and not args.recipe and not _changes(args):
        recipe = Recipe.load(args.out / "recipe.toml")  # resume exactly what was started
    else:
        recipe = recipe_from_args(args)
    if args.resume and not checkpoint.exists():  # a mistyped --out would otherwise start over unnoticed
        print(f"reglab: nothing to resume in {args.out} (no checkpoint.pt); starting a new run", file=sys.stderr)
    threads = args.threads or "auto"
    result = run_recipe(recipe, args.out, resume=args.resume, progress=not args.quiet, threads=threads)
    _print_summary(result.summary, args.out)
    return 0


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    d = summary["diagnosis"]
    table = Table(title=f"reglab train: {out}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("verdict", d["verdict"]),
        (
            "best epoch",
            "-" if d["best_epoch"] is None else f"{d['best_epoch']} (validation loss {d['best_valid_loss']:.4f})",
        ),
        ("stopped", f"epoch {summary['stopped_epoch']}: {summary['stop_reason']}"),
        ("gap at best / end", f"{d['gap_at_best']:.4f} / {d['gap_at_end']:.4f}"),
        ("overfitting onset", "-" if d["overfit_onset"] is None else f"epoch {d['overfit_onset']}"),
        *([("test accuracy", f"{summary['test_acc']:.4f}")] if "test_acc" in summary else []),
        ("test loss", f"{summary['test_loss']:.4f}"),
        *(
            [("zero weights", f"{summary['zero_frac']:.1%} of all (first layer {summary['first_zero_frac']:.1%})")]
            if summary.get("zero_frac")  # exact zeros: what proximal L1 makes
            else []
        ),
        *(
            [("sharpness", f"{summary['sharpness']:.4g} (ε = {summary['recipe']['training']['sharpness']:g})")]
            if "sharpness" in summary
            else []
        ),
    ]
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(d["explanation"], soft_wrap=True)
    console.print(f"files: {out}/history.json summary.json curves.png recipe.toml checkpoint.pt", soft_wrap=True)


def cmd_study(args: argparse.Namespace) -> int:
    from reglab.lab.study import load_study_file, make_plan, print_leaderboard, run_study
    from reglab.lab.study.chapters import study_spec

    if args.list:
        _print_studies()
        return 0
    spec = study_spec(args.study or "regularization")  # an unknown name: the list, before anything else
    if args.out is not None:
        check_folder("--out", args.out)
    options = load_study_file(args.config) if args.config else {}
    options["study"] = spec.name
    base = Recipe.load(args.recipe) if args.recipe else options.pop("base", spec.base_recipe())
    options.pop("base", None)
    changes = _changes(args)
    _implied(base, changes)
    options["base"] = base.updated(changes) if changes else base
    if args.arms is not None:  # --arms "" is an empty list (an error), not the default
        options["arms"] = [a.strip() for a in args.arms.split(",") if a.strip()]
    if args.seeds is not None:
        options["seeds"] = args.seeds
    if args.name:
        options["name"] = args.name
    plan = make_plan(**options)
    out = args.out if args.out is not None else check_folder("--out", Path("runs") / plan.name)
    for arm, why in plan.left_out.items():
        print(f"arm {arm} left out: it {why}")
    board = run_study(
        plan,
        out,
        storage=args.storage,
        workers=args.workers,
        threads=args.threads,
        progress=not args.quiet,
        stack=args.stack,
    )
    if not args.quiet:
        print_leaderboard(board, f"reglab study {plan.name}: {out}")
    print(f"report: {out / 'report.html'} (also results.csv, results.json)")
    return 0


def _print_studies() -> None:
    """``reglab study --list``: each built-in study, what it shows, its claims, its size and time."""
    from rich.console import Console

    from reglab.lab.study.chapters import list_studies

    console = Console(highlight=False)
    for s in list_studies():
        time = f"; {s['measured']} on 2 CPU cores with --workers 2" if s["measured"] else ""
        console.print(f"[bold]{s['name']}[/bold]: {s['shows']} ({s['trials']} trials{time})", soft_wrap=True)
        for claim in s["claims"]:
            console.print(f"  - {claim}", soft_wrap=True)
        console.print(f"  run: reglab study {s['name']} --workers 2; full length: {s['full']}", soft_wrap=True)


def cmd_tune(args: argparse.Namespace) -> int:
    from reglab.lab.tune import load_tune_file, make_space, run_tune
    from reglab.lab.tune.search import CONFIRM_SEEDS

    check_folder("--out", args.out)
    base = recipe_from_args(args)
    options = load_tune_file(args.config, base) if args.config else {}
    if args.techniques is not None:
        options["techniques"] = [t.strip() for t in args.techniques.split(",") if t.strip()]
    space = make_space(base, **options)
    if args.confirm_seeds < 2:
        raise UsageError(
            f"--confirm-seeds must be at least 2 (a paired test needs two seeds), got {args.confirm_seeds}"
        )
    seeds = tuple(range(CONFIRM_SEEDS[0], CONFIRM_SEEDS[0] + args.confirm_seeds))
    trials = args.trials if args.trials is not None or args.timeout is not None else 60
    result = run_tune(base, space, args.out, trials=trials, timeout=args.timeout, workers=args.workers,
                      threads=args.threads, storage=args.storage, name=args.name, sampler=args.sampler,
                      pruner=args.pruner, confirm_seeds=seeds, against=args.against)  # fmt: skip
    if not args.quiet:
        _print_tune(result, args.out)
    print(f"report: {args.out / 'report.html'} (best recipe: {args.out / 'best.toml'})")
    return 0


def _print_tune(result: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from reglab.lab.study.formats import p_text, pm

    table = Table(title=f"reglab tune: {out} (confirmation on fresh seeds)")
    for column in ("arm", "test loss", "vs baseline p", "verdict"):
        table.add_column(column)
    for e in result["confirmation"]:
        table.add_row(e["arm"], pm(e["test_loss"], e["test_loss_std"]), p_text(e["p_value"]), e["verdict"])
    console = Console()
    console.print(table)
    v = result["tuned_vs_against"]
    console.print(f"tuned vs {v['versus']}: Δ test loss {v['diff']:+.3f}, p = {p_text(v['p'])}: {v['verdict']}")
    for line in result["findings"]:
        console.print(line, soft_wrap=True)


def cmd_report(args: argparse.Namespace) -> int:
    from reglab.lab.study import print_leaderboard, rebuild_report

    board = rebuild_report(args.dir, storage=args.storage, name=args.name)
    print_leaderboard(board, f"reglab report: {args.dir}")
    print(f"report: {args.dir / 'report.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    debug = bool(os.environ.get("REGLAB_DEBUG"))  # Python's own tracebacks and warnings
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        args = None  # known once parsed: the interrupt message depends on the command
        try:
            parser = build_parser()
            args, extra = parser.parse_known_args(argv)
            if extra:  # said by the subcommand's parser, which knows its own flags
                where = f"reglab {args.command}" if args.command else "reglab"
                raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see {where} --help)")
            if args.command is None:  # `reglab` alone: what it can do
                parser.print_help()
                return 0
            commands = {"train": cmd_train, "study": cmd_study, "tune": cmd_tune, "report": cmd_report}
            return commands[args.command](args)
        except InputError as e:
            if debug:
                raise
            then = f"; then, to continue, {_again(args)}" if _out_of_room(e) else ""
            print("reglab: error: " + " ".join(str(e).split()) + then, file=sys.stderr)
            return 2
        except BrokenPipeError:
            # whoever read our output has gone (`reglab report DIR | head`): end quietly, as rich's console does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except KeyboardInterrupt:
            print(f"\nreglab: interrupted; to continue, {_again(args)}", file=sys.stderr)  # below any progress line
            return 130
        except Exception as e:  # a bug in reglab (or below it), not in what was given: keep the whole story
            traceback.print_exc()
            print(f"reglab: internal error ({type(e).__name__}): a bug in reglab, not in your input; "
                  "please report it to reglab's maintainers with the traceback above", file=sys.stderr)  # fmt: skip
            return 1


def _out_of_room(e: BaseException) -> bool:
    return isinstance(e, WriteError) or isinstance(e.__cause__, WriteError)  # a study's trial: its cause


def _again(args: argparse.Namespace | None) -> str:
    """How to continue a command that was stopped part-way (interrupted, or out of disk)."""
    return {
        "train": "run the same command with --resume",
        "study": "run the same command again (finished trials are kept)",
        "tune": "run the same command again (the search resumes; finished trials are kept)",
    }.get(getattr(args, "command", None), "run the same command again")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning in the command's style: one line on stderr, without Python's source line."""
    print("reglab: warning: " + " ".join(str(message).split()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
