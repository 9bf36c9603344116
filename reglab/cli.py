"""The ``reglab`` command.

    reglab study [--config STUDY.toml] [--arms A,B,...] [--seeds N] [--workers N]
                 [--storage URL] [--name NAME] [--recipe FILE] [--dataset NAME|FILE] [--out DIR]
    reglab report DIR [--storage URL] [--name NAME]
    reglab train [--recipe FILE] [--dataset NAME|FILE] [--model KIND] [--epochs N] [--seed S]
                 [--set KEY=VALUE ...] [--out DIR] [--resume]

Flags override the recipe file (or the default recipe; for a study, its base recipe); ``--set section.field=VALUE`` reaches
any recipe field, the value written as in TOML (``--set optimizer.options.betas=[0.9,0.99]``).
Bad input ends with a one-line error and exit status 2, never a traceback (set REGLAB_DEBUG=1
to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from reglab._checks import check_folder
from reglab.models import DEFAULT_WIDTH
from reglab.recipe import (
    ACTIVATIONS,
    DATASETS,
    INITS,
    LOSSES,
    MODEL_KINDS,
    NORMS,
    Recipe,
    tomllib,
)


class UsageError(Exception):
    """A mistake in what the user typed: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise UsageError(f"{self.prog}: {message}")


_DEFAULT_WIDTHS = ", ".join(f"{kind} {width}" for kind, width in DEFAULT_WIDTH.items())

# flag -> (recipe key, argparse options); flags left unset do not override the recipe
_RECIPE_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--model": ("model.kind", {"choices": MODEL_KINDS}),
    "--width": (
        "model.width",
        {"type": int, "help": f"hidden units (mlp) or channels (cnn); 0: the kind's default ({_DEFAULT_WIDTHS})"},
    ),
    "--depth": ("model.depth", {"type": int, "help": "hidden layers or conv blocks"}),
    "--activation": ("model.activation", {"choices": ACTIVATIONS}),
    "--norm": ("model.norm", {"choices": NORMS}),
    "--dropout": ("model.dropout", {"type": float, "help": "drop probability p"}),
    "--init": ("model.init", {"choices": INITS}),
    "--optimizer": ("optimizer.name", {"help": "sgd, adagrad, adadelta, rmsprop, adam, adamw"}),
    "--lr": ("optimizer.lr", {"type": float, "help": "learning rate"}),
    "--momentum": ("optimizer.options.momentum", {"type": float, "help": "momentum (sgd, rmsprop)"}),
    "--weight-decay": (
        "optimizer.options.weight_decay",
        {"type": float, "help": "weight decay λ (coupled L2 unless --decoupled)"},
    ),
    "--clip-norm": ("optimizer.options.clip_norm", {"type": float, "help": "clip gradients to this global norm"}),
    "--clip-value": ("optimizer.options.clip_value", {"type": float, "help": "clip gradients elementwise to ±value"}),
    "--schedule": ("schedule.name", {"help": "none, step, multistep, exponential, cosine, onecycle, plateau"}),
    "--warmup": ("schedule.warmup_epochs", {"type": int, "help": "epochs of linear learning-rate warm-up"}),
    "--batch-size": ("data.batch_size", {"type": int}),
    "--valid-fraction": ("data.valid_fraction", {"type": float}),
    "--train-size": (
        "data.train_size",
        {"type": int, "help": "use N training samples (a random subset; validation and test sets unchanged)"},
    ),
    "--epochs": ("training.epochs", {"type": int}),
    "--seed": ("training.seed", {"type": int}),
    "--device": ("training.device", {"help": "cpu, cuda, cuda:N or auto"}),
    "--sharpness": (
        "training.sharpness",
        {
            "type": float,
            "metavar": "EPS",
            "help": "measure Keskar's sharpness of the final weights in a box of radius EPS (e.g. 1e-3)",
        },
    ),
    "--loss": (
        "training.loss",
        {"choices": LOSSES, "help": "cross_entropy (classes), mse or mae (regression; default for diabetes: mse)"},
    ),
    "--patience": ("early_stopping.patience", {"type": int, "help": "early-stopping patience (epochs)"}),
    "--l1": ("regularization.l1", {"type": float, "help": "L1 penalty α‖W‖₁ in the loss"}),
    "--l2": ("regularization.l2", {"type": float, "help": "L2 penalty (α/2)‖W‖² in the loss"}),
    "--l1-proximal": ("optimizer.options.l1_proximal", {"type": float, "help": "proximal L1 step (exact zeros)"}),
    "--input-noise": ("regularization.input_noise", {"type": float, "help": "σ of Gaussian noise on training inputs"}),
    "--weight-noise": (
        "regularization.weight_noise",
        {"type": float, "help": "σ of Gaussian noise on weights per step"},
    ),
    "--shift": ("augment.shift", {"type": int, "help": "random shift/translation up to N samples or pixels"}),
    "--flip": ("augment.flip", {"type": float, "help": "probability of a horizontal flip"}),
    "--rotate": ("augment.rotate", {"type": float, "help": "random rotation up to ± degrees (images)"}),
    "--cutout": ("augment.cutout", {"type": int, "help": "Cutout box side"}),
    "--label-smoothing": ("mixing.label_smoothing", {"type": float, "help": "label smoothing ε"}),
    "--mixup": ("mixing.mixup_alpha", {"type": float, "help": "Mixup α"}),
    "--cutmix": ("mixing.cutmix_alpha", {"type": float, "help": "CutMix α"}),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reglab", description="See overfitting and compare the cures.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train one recipe and diagnose over/underfitting")
    train.add_argument("--recipe", type=Path, help="recipe TOML file (default: the built-in recipe)")
    train.add_argument(
        "--dataset", help=f"{', '.join(d for d in DATASETS if d not in ('npz', 'csv'))}, or a .npz/.csv file"
    )
    train.add_argument("--data-dir", help="folder holding the data set's files (fashion-mnist IDX files)")
    for flag, (key, options) in _RECIPE_FLAGS.items():
        train.add_argument(flag, dest=key, default=None, **options)
    train.add_argument(
        "--decoupled", action="store_true", help="decoupled weight decay (AdamW-style) for any optimizer"
    )
    train.add_argument("--early-stopping", action="store_true", help="stop when validation loss stops improving")
    train.add_argument(
        "--grad-norms", action="store_true", help="record each layer's gradient norm per epoch (vanishing/exploding)"
    )
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any recipe field, e.g. model.dropout=0.2"
    )
    train.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder (default: runs/train)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    study = sub.add_parser("study", help="ablation of regularization techniques over seeds, with a report")
    study.add_argument("--config", type=Path, help="study TOML file: name, seeds, arms, base recipe, arm strengths")
    study.add_argument(
        "--arms",
        help="comma-separated arms (default: every arm that fits the data and loss); known: " + ", ".join(_arm_names()),
    )
    study.add_argument("--seeds", type=int, help="seeds per arm (default 3)")
    study.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    study.add_argument("--threads", type=int, help="torch threads per worker (default: CPU cores // workers)")
    study.add_argument("--storage", help="Optuna storage URL shared by workers (default: OUT/study.db)")
    study.add_argument("--name", help="study name in the storage (default: the study file's, or 'default')")
    study.add_argument("--recipe", type=Path, help="base recipe TOML file (default: the built-in recipe)")
    study.add_argument("--dataset", help="data set name or a .npz/.csv file")
    study.add_argument("--data-dir", help="folder holding the data set's files")
    for flag in ("--epochs", "--batch-size", "--model", "--width", "--depth", "--optimizer", "--lr", "--loss"):
        key, options = _RECIPE_FLAGS[flag]
        study.add_argument(flag, dest=key, default=None, **options)
    study.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any base-recipe field")
    study.add_argument("--out", type=Path, default=Path("runs/study"), help="output folder (default: runs/study)")
    study.add_argument("--quiet", action="store_true", help="no progress bar or table")

    report = sub.add_parser("report", help="rebuild a study's report from its storage")
    report.add_argument("dir", type=Path, help="the study's output folder")
    report.add_argument("--storage", help="storage URL (default: the one the study used)")
    report.add_argument("--name", help="study name (default: the one the study used)")
    return parser


def _arm_names() -> list[str]:
    from reglab.study.plan import ARMS

    return list(ARMS)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    changes = _changes(args)
    _implied(recipe, changes)
    return recipe.updated(changes) if changes else recipe


def _implied(recipe: Recipe, changes: dict[str, Any]) -> None:
    """Follow-on changes a user expects: a new model kind gets its default width, a regression
    data set a regression loss (mse) unless a loss was chosen."""
    from reglab.data import REGRESSION_SETS

    if "model.kind" in changes and changes["model.kind"] != recipe.model.kind and "model.width" not in changes:
        changes["model.width"] = 0  # the new kind's default width
    if (
        changes.get("data.name") in REGRESSION_SETS
        and "training.loss" not in changes
        and not recipe.training.regression
    ):
        changes["training.loss"] = "mse"


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {key: getattr(args, key) for key, _ in _RECIPE_FLAGS.values() if getattr(args, key, None) is not None}
    if args.dataset:
        suffix = Path(args.dataset).suffix.lower()
        if suffix in (".npz", ".csv"):
            changes["data.name"], changes["data.path"] = suffix[1:], args.dataset
        else:
            changes["data.name"] = args.dataset
    if args.data_dir:
        changes["data.path"] = args.data_dir
    if getattr(args, "early_stopping", False):
        changes["early_stopping.enabled"] = True
    if getattr(args, "grad_norms", False):
        changes["training.grad_norms"] = True
    if getattr(args, "decoupled", False):
        changes["optimizer.options.decoupled"] = True
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
    from reglab.train.run import run_recipe

    check_folder("--out", args.out)
    checkpoint = args.out / "checkpoint.pt"
    if args.resume and checkpoint.exists() and not args.recipe and not _changes(args):
        recipe = Recipe.load(args.out / "recipe.toml")  # resume exactly what was started
    else:
        recipe = recipe_from_args(args)
    if args.resume and not checkpoint.exists():  # a mistyped --out would otherwise start over unnoticed
        print(f"reglab: nothing to resume in {args.out} (no checkpoint.pt); starting a new run", file=sys.stderr)
    result = run_recipe(recipe, args.out, resume=args.resume, progress=not args.quiet)
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
    console.print(f"files: {out}/history.json summary.json curves.png recipe.toml")


def cmd_study(args: argparse.Namespace) -> int:
    from reglab.study import load_study_file, make_plan, print_leaderboard, run_study

    check_folder("--out", args.out)
    options = load_study_file(args.config) if args.config else {}
    base = Recipe.load(args.recipe) if args.recipe else options.pop("base", Recipe())
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
    for arm, why in plan.left_out.items():
        print(f"arm {arm} left out: it {why}")
    board = run_study(
        plan, args.out, storage=args.storage, workers=args.workers, threads=args.threads, progress=not args.quiet
    )
    if not args.quiet:
        print_leaderboard(board, f"reglab study {plan.name}: {args.out}")
    print(f"report: {args.out / 'report.html'} (also results.csv, results.json)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from reglab.study import print_leaderboard, rebuild_report

    board = rebuild_report(args.dir, storage=args.storage, name=args.name)
    print_leaderboard(board, f"reglab report: {args.dir}")
    print(f"report: {args.dir / 'report.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from reglab.study.runner import StudyError
    from reglab.study.storage import StorageError

    debug = bool(os.environ.get("REGLAB_DEBUG"))  # Python's own tracebacks and warnings
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        try:
            args = build_parser().parse_args(argv)
            return {"train": cmd_train, "study": cmd_study, "report": cmd_report}[args.command](args)
        except (UsageError, ValueError, TypeError, FileNotFoundError, FileExistsError, StorageError, StudyError) as e:
            if debug:
                raise
            print("reglab: error: " + " ".join(str(e).split()), file=sys.stderr)
            return 2
        except BrokenPipeError:
            # whoever read our output has gone (`reglab report DIR | head`): end quietly, as rich's console does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except KeyboardInterrupt:
            print(
                "reglab: interrupted; to continue, run the same command again (reglab train: add --resume)",
                file=sys.stderr,
            )
            return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning in the command's style: one line on stderr, without Python's source line."""
    print("reglab: warning: " + " ".join(str(message).split()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
