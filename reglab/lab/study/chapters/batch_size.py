"""The batch-size study: Keskar et al. (2016, arXiv:1609.04836), large batches and sharp minima
(TECHNIQUES.md section 2).

The same MLP and Adam (η = 1e-3) on 1,000 MNIST-1D training samples at batch sizes from 10 to
the whole training set, each trained until its training loss is at most ``TARGET`` (a low
training loss whatever the batch, as Keskar et al. compare minima), then measured: test
accuracy, the generalization gap, Keskar's sharpness φ at ε = 5e-4 and 1e-3 (the paper's two),
seconds per epoch; and the loss along the straight line from the smallest-batch minimum to the
full-batch one (their Figure 3).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reglab.lab.study.chapters.common import points
from reglab.lab.study.chapters.spec import section
from reglab.lab.study.claims import Claim, Evidence, trend_finding
from reglab.lab.study.panels import Panel, panels_png

TRAIN = 1000  # training samples: the full batch is 1,000
SIZES = [10, 30, 100, 300, TRAIN]
TARGET = 0.05  # training loss every run trains down to
EPOCHS = 1000  # the most epochs a run may take to get there (full batch: one step an epoch)
EPS = (5e-4, 1e-3)  # Keskar's ε: summary "sharpness" and "sharpness_wide"

BASE = {
    "data.train_size": TRAIN,
    "training.epochs": EPOCHS,
    "training.target_loss": TARGET,
    "training.sharpness": EPS[0],
    "training.sharpness_wide": EPS[1],
}


def arms() -> list[str]:
    return [f"batch-size-{b}" for b in SIZES]


def _trend(y: str, sign: int, label: str):
    return lambda ev: trend_finding(ev, arms(), "batch_size", y, sign, "batch size", label)


CLAIMS = (
    Claim(
        "sharper-minima-eps-5e-4",
        "Larger batches reach sharper minima: at ε = 5e-4.",
        "Spearman ρ between batch size and Keskar's sharpness φ(ε = 5e-4) of the final weights over every trial: holds "
        "if ρ > 0 with p < 0.05, does not hold if ρ < 0 with p < 0.05.",
        _trend("sharpness", +1, "sharpness φ(5e-4)"),
    ),
    Claim(
        "sharper-minima-eps-1e-3",
        "Larger batches reach sharper minima: at ε = 1e-3.",
        "Spearman ρ between batch size and Keskar's sharpness φ(ε = 1e-3) of the final weights over every trial: holds "
        "if ρ > 0 with p < 0.05, does not hold if ρ < 0 with p < 0.05.",
        _trend("sharpness_wide", +1, "sharpness φ(1e-3)"),
    ),
    Claim(
        "larger-batches-generalize-worse",
        "Larger batches generalize worse: a larger generalization gap.",
        "Spearman ρ between batch size and the final gap (validation − training loss) over every trial: holds if "
        "ρ > 0 with p < 0.05, does not hold if ρ < 0 with p < 0.05.",
        _trend("gap", +1, "final gap"),
    ),
    Claim(
        "smaller-batches-slower-per-epoch",
        "Smaller batches take longer per epoch.",
        "Spearman ρ between batch size and the training seconds per epoch over every trial: holds if ρ < 0 with "
        "p < 0.05, does not hold if ρ > 0 with p < 0.05.",
        _trend("epoch_seconds", -1, "seconds per epoch"),
    ),
)


def measure_panels(evidence: Evidence) -> list[Panel]:
    """Test accuracy, gap, sharpness at both ε and seconds per epoch against the batch size."""
    done = arms()
    out = []
    shown = (
        ("test_acc", "test accuracy"),
        ("gap", "final gap (validation − training)"),
        ("sharpness", f"sharpness φ(ε = {EPS[0]:g})"),
        ("sharpness_wide", f"sharpness φ(ε = {EPS[1]:g})"),
        ("epoch_seconds", "seconds per epoch"),
        ("stopped_epoch", "epochs to the target loss"),
    )
    for key, what in shown:
        xs, ys, sd = points(evidence, done, lambda r: r["recipe"]["data"]["batch_size"], key)
        out.append(Panel(what, "batch size", what, {"mean ± std": (xs, ys)} if xs else {}, {"mean ± std": sd},
                         log_x=True, log_y=key in ("epoch_seconds", "stopped_epoch"), markers=True))  # fmt: skip
    return out


def interpolation(evidence: Evidence, alphas: np.ndarray | None = None) -> dict[str, Any] | None:
    """Training and test loss of ``(1 − α) θ_small + α θ_large`` for α along ``alphas``: θ_small
    the smallest-batch run's final weights, θ_large the largest's, one seed both finished (read
    from the runs' checkpoints in the study's folder; ``None`` if they are not there)."""
    import glob

    import torch

    from reglab.lab.build import build
    from reglab.lab.recipe import Recipe
    from reglab.train.checkpoint import load

    finished = [a for a in arms() if evidence.groups.get(a)]
    if len(finished) < 2 or evidence.out is None:
        return None
    small, large = finished[0], finished[-1]
    seeds = sorted({r["seed"] for r in evidence.groups[small]} & {r["seed"] for r in evidence.groups[large]})
    if not seeds:
        return None
    seed = seeds[0]
    files = [
        sorted(glob.glob(str(evidence.out / "runs" / f"{a}-seed{seed}-*" / "checkpoint.pt"))) for a in (small, large)
    ]
    if not all(files):
        return None
    states = [load(f[-1])["trainer"]["model"] for f in files]
    row = next(r for r in evidence.groups[small] if r["seed"] == seed)
    trainer = build(Recipe.from_dict(row["recipe"]))
    alphas = np.linspace(-0.5, 1.5, 41) if alphas is None else alphas
    train, test = [], []
    for alpha in alphas:
        mixed = {k: (1 - alpha) * states[0][k] + alpha * states[1][k] if torch.is_floating_point(states[0][k])
                 else states[0][k] for k in states[0]}  # fmt: skip
        trainer.model.load_state_dict(mixed)
        train.append(trainer.evaluate(trainer.data.x_train, trainer.data.y_train)[0])
        test.append(trainer.evaluate(trainer.data.x_test, trainer.data.y_test)[0])
    return {"small": small, "large": large, "seed": seed, "alpha": alphas.tolist(), "train": train, "test": test}


def figures(evidence: Evidence) -> list[str]:
    out = []
    if any(evidence.groups.get(a) for a in arms()):
        out += section(
            "Test accuracy, gap and sharpness against batch size",
            panels_png(measure_panels(evidence), columns=3, size=(4.4, 3.4)),
            "test accuracy, generalization gap, sharpness at two ε and time per epoch against batch size",
            f"Each point is one batch size (mean ± std over seeds), every run trained to a training loss of "
            f"{TARGET:g}. Keskar et al.: larger batches end in sharper minima (higher φ) and generalize worse; "
            "smaller batches take more steps, so more seconds, per epoch.",
        )
    line = interpolation(evidence)
    if line:
        panel = Panel(
            f"from {line['small']} (α = 0) to {line['large']} (α = 1), seed {line['seed']}",
            "α", "cross-entropy loss",
            {"training": (line["alpha"], line["train"]), "test": (line["alpha"], line["test"])},
            log_y=True,
        )  # fmt: skip
        out += section(
            "The loss between a small-batch and a large-batch minimum",
            panels_png([panel], columns=1, size=(7.5, 4.2)),
            "training and test loss along the line between the two minima",
            "The weights (1 − α) θ_small + α θ_large for α from −0.5 to 1.5 (Keskar et al.'s Figure 3; log axis). "
            "Keskar et al. found the loss rising more steeply around the large-batch minimum (α = 1) than around "
            "the small-batch one (α = 0): compare the two ends.",
        )
    return out
