"""The capacity study: width, depth and training-set size against the generalization gap
(TECHNIQUES.md sections 1 and 11)."""

from __future__ import annotations

from reglab.lab.study.chapters.spec import section
from reglab.lab.study.claims import Claim, Evidence, trend_finding

WIDTHS = [8, 16, 32, 64, 128, 256, 512, 1024]
DEPTHS = [0, 1, 2, 3, 4]
SIZES = [200, 400, 800, 1600, 3200]  # MNIST-1D's training split holds 3,200 (4,000 less validation)


def _model_arms() -> list[str]:
    return [f"width-{w}" for w in WIDTHS] + [f"depth-{d}" for d in DEPTHS]


def _size_arms() -> list[str]:
    return [f"train-size-{n}" for n in SIZES]


def _extremes(evidence: Evidence) -> tuple[str | None, str | None]:
    """The model arms with the fewest and the most parameters (finished ones)."""
    from reglab.lab.study.claims import metric

    done = [(metric(rs[0], "params"), a) for a, rs in evidence.groups.items() if a in _model_arms() and rs]
    if not done:
        return None, None
    done.sort()
    return done[0][1], done[-1][1]


def _extreme_verdicts(evidence: Evidence):
    from reglab.lab.study.claims import FAILS, HOLDS, INCONCLUSIVE, Finding

    small, large = _extremes(evidence)
    if small is None or small == large:
        return Finding(INCONCLUSIVE, "fewer than two model sizes finished", {}, "run the study")
    said = {a: [r["diagnosis"]["verdict"] for r in evidence.groups[a]] for a in (small, large)}
    wanted = {small: "underfitting", large: "overfitting"}
    share = {a: sum(v == wanted[a] for v in said[a]) / len(said[a]) for a in said}
    words = "; ".join(f"{a} ({wanted[a]} wanted): " + ", ".join(said[a]) for a in (small, large))
    numbers = {"smallest": small, "largest": large, "verdicts": said}
    if all(s > 0.5 for s in share.values()):
        return Finding(HOLDS, words, numbers)
    if any(s < 0.5 for s in share.values()):
        return Finding(FAILS, words, numbers)
    return Finding(INCONCLUSIVE, words, numbers, "the seeds split evenly: run more")


CLAIMS = (
    Claim(
        "bigger-overfits-more",
        "Bigger models overfit more: the generalization gap rises with the number of parameters.",
        "Spearman ρ between parameter count and final gap (validation − training loss at the last epoch) over every "
        "trial of the width and depth sweeps: holds if ρ > 0 with p < 0.05, does not hold if ρ < 0 with p < 0.05.",
        lambda ev: trend_finding(ev, _model_arms(), "params", "gap", +1, "parameters", "final gap"),
    ),
    Claim(
        "more-data-overfits-less",
        "More data overfits less: the generalization gap falls as the training set grows.",
        "Spearman ρ between training-set size and final gap over every trial of the size sweep: holds if ρ < 0 "
        "with p < 0.05, does not hold if ρ > 0 with p < 0.05.",
        lambda ev: trend_finding(ev, _size_arms(), "train_samples", "gap", -1, "training samples", "final gap"),
    ),
    Claim(
        "small-underfits-large-overfits",
        "The smallest model underfits and the largest overfits.",
        "The diagnosis (reglab train's verdict) of the model arms with the fewest and the most parameters: holds if "
        "more than half the seeds of the smallest are 'underfitting' and more than half of the largest "
        "'overfitting'; does not hold if fewer than half of either are.",
        _extreme_verdicts,
    ),
)


def figures(evidence: Evidence) -> list[str]:
    from reglab.lab.study import figures

    out = []
    if any(evidence.groups.get(a) for a in _model_arms()):
        series = {
            "width (depth 2)": [a for a in _model_arms() if a.startswith("width-")],
            "depth (width 256)": [a for a in _model_arms() if a.startswith("depth-")],
        }
        out += section(
            "Loss and gap against model size",
            figures.sweep_curves(evidence.groups, series, "params", "parameters", log_x=True),
            "validation loss and gap against parameter count",
            "Each point is one arm (mean over seeds, bars ± std): the best and the final validation loss and the "
            "final generalization gap (validation − training loss) against the parameter count, log axis. Look for "
            "the gap growing with size, and the final validation loss rising above the best one on the right.",
        )
    if any(evidence.groups.get(a) for a in _size_arms()):
        out += section(
            "Loss and gap against training-set size",
            figures.sweep_curves(
                evidence.groups, {"training size": _size_arms()}, "train_samples", "training samples", log_x=True
            ),  # fmt: skip
            "validation loss and gap against training size",
            "The same three measures against the number of training samples (log axis), the model fixed at 2×256: "
            "with more data the gap should shrink.",
        )
    picked = figures.pick_diagnosed(evidence.rows, ("underfitting", "good fit", "overfitting"))
    if picked:
        out += section(
            "Underfit, good fit, overfit",
            figures.diagnosed_panels(picked),
            "three learning curves picked by the diagnosis",
            "One run per verdict of the diagnosis, picked from the sweeps (the underfit run with the fewest "
            "parameters, the good fit with the lowest validation loss, the overfit run with the largest gap): "
            "training and validation loss per epoch. Underfit: both high; overfit: the validation loss turns up "
            "while the training loss falls.",
        )
    return out
