"""The built-in studies: one per chapter of the course (``reglab study NAME``).

Each ``StudySpec`` gives a base recipe (changes over ``Recipe()``), arms (a name, what it does,
its recipe changes and the arm it is compared with), sweeps (recipe key -> values, one arm per
value), seeds, the course's claims that its report checks (``reglab.lab.study.claims``) and its
own figures. Settings and rules were fixed before the studies were first run; a claim that does
not hold is reported as a finding (BENCHMARKS.md has each study's table from a full run).

- ``regularization``: the ablation of every technique against the baseline, and their combination;
- ``capacity``: width, depth and training-set size (TECHNIQUES.md sections 1 and 11);
- ``penalties``: L2 = weight decay for SGD but not Adam, L1's zeros, feature selection (section 4);
- ``augmentation``: label-preserving transforms, noise, mixing, calibration (sections 7-9);
- ``robust-loss``: squared against absolute error with outliers in the targets (section 12);
- ``optimizers``: the update rules at their best learning rates, trajectories, schedules (section 3);
- ``batch-size``: Keskar's large batches and sharp minima (section 2);
- ``gradients``: vanishing and exploding gradients: activations, inits, depth, clipping, RNNs (section 10);
- ``normalization``: batch, layer and group norm against batch size and learning rate (section 8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reglab.errors import ReglabError
from reglab.lab.study.chapters import (
    augmentation,
    batch_size,
    capacity,
    gradients,
    normalization,
    optimizers,
    penalties,
    robust,
)
from reglab.lab.study.chapters.spec import ArmSpec, StudySpec
from reglab.lab.study.claims import Claim, Evidence

__all__ = ["STUDIES", "ArmSpec", "StudySpec", "claims_of", "figures_of", "list_studies", "study_spec"]

STUDIES: dict[str, StudySpec] = {
    spec.name: spec
    for spec in (
        StudySpec(
            "regularization",
            "every technique against the baseline on MNIST-1D, and the best of them combined",
            full="the default is the full version (100 epochs, 3 seeds); --seeds 5 narrows the intervals",
            measured="110-115 s",
        ),
        StudySpec(
            "capacity",
            "model width, depth and training-set size against the generalization gap (MNIST-1D)",
            base={"training.epochs": 60},
            arms={},
            sweeps={"model.width": capacity.WIDTHS, "model.depth": capacity.DEPTHS, "data.train_size": capacity.SIZES},
            seeds=3,
            claims=capacity.CLAIMS,
            figures=capacity.figures,
            full="--epochs 100 --seeds 5",
            measured="97 s",
        ),
        StudySpec(
            "penalties",
            "L2 against weight decay with SGD and Adam, L1's exact zeros, feature selection by L1",
            arms=penalties.ARMS,
            seeds=3,
            claims=penalties.CLAIMS,
            figures=penalties.figures,
            full="--seeds 5 (the default has the regularization study's 100 epochs)",
            measured="94 s",
        ),
        StudySpec(
            "augmentation",
            "flips, shifts, rotations, Cutout, erasing, noise, label smoothing, Mixup and CutMix on digits (CNN) and "
            "MNIST-1D (MLP); calibration",
            base={"training.epochs": 50, "data.name": "digits", "model.kind": "cnn"},
            arms=augmentation.ARMS,
            seeds=3,
            claims=augmentation.CLAIMS,
            figures=augmentation.figures,
            full="--epochs 100 --seeds 5 (or --dataset fashion-mnist for larger images)",
            measured="109 s",
        ),
        StudySpec(
            "robust-loss",
            "MSE, MAE and Huber losses with 0-20% outliers in the training targets (diabetes, linear model)",
            base={
                "data.name": "diabetes",
                "training.loss": "mse",
                "model.depth": 0,
                "optimizer.lr": 0.01,
                "training.epochs": 100,
                "data.batch_size": 32,
            },  # fmt: skip
            arms=robust.ARMS,
            seeds=5,
            claims=robust.CLAIMS,
            figures=robust.figures,
            full="--seeds 10",
            measured="30 s",
        ),
        StudySpec(
            "optimizers",
            "GD, SGD, momentum, Nesterov, Adagrad, Adadelta, RMSprop, Adam, AdamW (and the course's forms) at their "
            "best learning rates; effective steps, 2-D trajectories, schedules (MNIST-1D)",
            base={"training.epochs": optimizers.EPOCHS, "training.step_size": True},
            arms=optimizers.ARMS,
            seeds=3,
            claims=optimizers.CLAIMS,
            figures=optimizers.figures,
            full="--epochs 100 --seeds 5",
            measured="112 s",
        ),
        StudySpec(
            "batch-size",
            "Keskar's experiment: batch sizes 10 to the full set trained to a low training loss; sharpness, gap, the "
            "loss between a small- and a large-batch minimum (MNIST-1D)",
            base=batch_size.BASE,
            arms={},
            sweeps={"data.batch_size": batch_size.SIZES},
            seeds=3,
            claims=batch_size.CLAIMS,
            figures=batch_size.figures,
            full="--seeds 5 --set data.train_size=3200 (the whole training split)",
            measured="70 s",
        ),
        StudySpec(
            "gradients",
            "vanishing and exploding gradients: activation × init × batch norm in an 8-layer MLP, dead ReLUs, a tanh "
            "RNN with and without clipping, a GRU (MNIST-1D)",
            base=gradients.BASE,
            arms=gradients.ARMS,
            seeds=3,
            claims=gradients.CLAIMS,
            figures=gradients.figures,
            full="--epochs 50 --seeds 5",
            measured="83 s",
        ),
        StudySpec(
            "normalization",
            "batch, layer and group norm at batch sizes 2-128 and at 10× the learning rate; running statistics at "
            "inference; norms in a CNN; layer norm in an RNN (MNIST-1D)",
            base=normalization.BASE,
            arms=normalization.ARMS,
            seeds=3,
            claims=normalization.CLAIMS,
            figures=normalization.figures,
            full="--epochs 40 --seeds 5 --set data.train_size=3200",
            measured="58 s",
        ),
    )
}


def study_spec(name: str) -> StudySpec:
    """The built-in study ``name``; an unknown name is an error that lists them."""
    if not isinstance(name, str) or name not in STUDIES:
        raise ReglabError(f"unknown study {name!r}; the built-in studies: {', '.join(STUDIES)} (reglab study --list)")
    return STUDIES[name]


def list_studies() -> list[dict[str, Any]]:
    """What ``reglab study --list`` prints: name, what it shows, its claims, trials and time."""
    return [
        {
            "name": s.name,
            "shows": s.shows,
            "claims": _grouped([c.says for c in s.claims]),
            "trials": s.points(),
            "measured": s.measured,
            "full": s.full,
        }
        for s in STUDIES.values()
    ]


def _grouped(says: Sequence[str]) -> list[str]:
    """Claims that share their words before a colon, said once: "A: x", "A: y" -> "A: x, y"."""
    out: dict[str, list[str]] = {}
    for text in says:
        head, sep, tail = text.partition(": ")
        out.setdefault(head if sep else text, []).append(tail.split(" (")[0].rstrip(".") if sep else "")
    return [f"{head}: {', '.join(t for t in tails if t)}." if any(tails) else head for head, tails in out.items()]


def claims_of(plan: Any) -> Sequence[Claim]:
    spec = STUDIES.get(getattr(plan, "study", "") or "")
    return spec.claims if spec else ()


def figures_of(plan: Any) -> Callable[[Evidence], list[str]] | None:
    spec = STUDIES.get(getattr(plan, "study", "") or "")
    return spec.figures if spec else None
