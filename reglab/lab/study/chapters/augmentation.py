"""The augmentation study: label-preserving transforms, noise and mixing on images and
signals, and calibration (TECHNIQUES.md sections 7-9)."""

from __future__ import annotations

from reglab.lab.study.chapters.spec import ArmSpec, section
from reglab.lab.study.claims import Claim, Evidence, paired_finding

IMAGE_ARMS = {
    "baseline": ArmSpec("the CNN on the images, no augmentation", {}),
    "flip": ArmSpec("horizontal flip with p = 0.5", {"augment.flip": 0.5}),
    "shift": ArmSpec("random shifts of up to 1 pixel", {"augment.shift": 1}),
    "rotate": ArmSpec("random rotations of up to 15°", {"augment.rotate": 15.0}),
    "scale": ArmSpec("random zoom by a factor in [0.9, 1.1]", {"augment.scale": 0.1}),
    "cutout": ArmSpec("Cutout: a 3×3 box zeroed", {"augment.cutout": 3}),
    "erase": ArmSpec("random erasing with p = 0.5", {"augment.erase": 0.5}),
    "input-noise": ArmSpec("Gaussian input noise σ = 0.1", {"regularization.input_noise": 0.1}),
    "weight-noise": ArmSpec("Gaussian weight noise σ = 0.01 during each step", {"regularization.weight_noise": 0.01}),
    "label-smoothing": ArmSpec("label smoothing ε = 0.1", {"mixing.label_smoothing": 0.1}),
    "mixup": ArmSpec("Mixup α = 0.4", {"mixing.mixup_alpha": 0.4}),
    "cutmix": ArmSpec("CutMix α = 1", {"mixing.cutmix_alpha": 1.0}),
}
SIGNAL = {"data.name": "mnist1d", "data.path": "", "model.kind": "mlp", "model.width": 0}
SIGNAL_ARMS = {
    "1d-baseline": ArmSpec("MNIST-1D signals, the MLP, no augmentation", dict(SIGNAL), versus="1d-baseline"),
    "1d-shift": ArmSpec(
        "signals: random shifts of up to 4 samples", {**SIGNAL, "augment.shift": 4}, versus="1d-baseline"
    ),  # fmt: skip
    "1d-scale": ArmSpec(
        "signals: random stretch by [0.9, 1.1]", {**SIGNAL, "augment.scale": 0.1}, versus="1d-baseline"
    ),
    "1d-cutout": ArmSpec("signals: Cutout of 4 samples", {**SIGNAL, "augment.cutout": 4}, versus="1d-baseline"),
    "1d-input-noise": ArmSpec(
        "signals: Gaussian input noise σ = 0.3", {**SIGNAL, "regularization.input_noise": 0.3}, versus="1d-baseline"
    ),  # fmt: skip
    "1d-label-smoothing": ArmSpec(
        "signals: label smoothing ε = 0.1", {**SIGNAL, "mixing.label_smoothing": 0.1}, versus="1d-baseline"
    ),  # fmt: skip
    "1d-mixup": ArmSpec("signals: Mixup α = 0.4", {**SIGNAL, "mixing.mixup_alpha": 0.4}, versus="1d-baseline"),
}
ARMS = {**IMAGE_ARMS, **SIGNAL_ARMS}
MIXING = ["label-smoothing", "mixup", "cutmix", "1d-label-smoothing", "1d-mixup"]


def _reduces_overfitting(arm: str):
    def measure(evidence: Evidence):
        from reglab.lab.study.claims import FAILS, HOLDS, INCONCLUSIVE, Finding

        versus = evidence.plan.versus(arm)
        family = [(a, evidence.plan.versus(a)) for a in ARMS if ARMS[a].versus != a
                  and a in evidence.groups]  # fmt: skip
        gap = paired_finding(evidence, arm, versus, "gap", lower=True, family=family, label="final gap")
        loss = paired_finding(evidence, arm, versus, "test_loss", lower=True, family=family, label="test loss")
        if not gap.numbers:
            return gap
        words = f"{gap.measurement}. {loss.measurement}"
        numbers = {"gap": gap.numbers, "test_loss": loss.numbers}
        if gap.verdict == FAILS or loss.verdict == FAILS:
            return Finding(FAILS, words, numbers)
        if gap.verdict == HOLDS:
            return Finding(HOLDS, words, numbers)
        return Finding(INCONCLUSIVE, words, numbers, gap.decide)

    return measure


def _less_confident(arm: str):
    def measure(evidence: Evidence):
        versus = evidence.plan.versus(arm)
        family = [(a, evidence.plan.versus(a)) for a in MIXING if a in evidence.groups]
        found = paired_finding(evidence, arm, versus, "test_confidence", lower=True, family=family,
                               label="mean test confidence")  # fmt: skip
        if not found.numbers:
            return found
        ece = {a: evidence.values(a, "test_ece") for a in (arm, versus)}
        words = (
            found.measurement + "; ECE " + ", ".join(f"{a} {sum(v.values()) / len(v):.3f}" for a, v in ece.items() if v)
        )
        from dataclasses import replace

        return replace(found, measurement=words, numbers={**found.numbers, "ece": {a: list(v.values()) for a, v in
                                                                                   ece.items()}})  # fmt: skip

    return measure


RULE = (
    "The final gap (validation − training loss at the last epoch, the training loss as trained: on transformed "
    "or mixed batches) and the test loss against the arm's baseline (the images' or the signals'), seed by seed, "
    "paired t-tests Holm-corrected over the study's arms: holds if the gap is lower with p < 0.05 and the test loss "
    "not higher with p < 0.05; does not hold if either is higher with p < 0.05."
)
CLAIMS = (
    *(
        Claim(
            f"{arm}-reduces-overfitting",
            f"Augmentation reduces overfitting: {arm} ({spec.description}).",
            RULE,
            _reduces_overfitting(arm),
            depends="Only a label-preserving transform is a fair augmentation: a flipped digit can be another digit."
            if arm == "flip"
            else "",
        )  # fmt: skip
        for arm, spec in ARMS.items()
        if spec.versus != arm and arm != "baseline"
    ),
    *(
        Claim(
            f"{arm}-less-over-confident",
            f"Mixing and label smoothing make predictions less over-confident: {arm}.",
            "The mean largest predicted probability on the test points, against the arm's baseline seed by seed "
            "(paired t-test, Holm over the mixing arms): holds if lower with p < 0.05, does not hold if higher "
            "with p < 0.05; the expected calibration error (15 bins) is reported alongside.",
            _less_confident(arm),
        )  # fmt: skip
        for arm in MIXING
    ),
)


def figures(evidence: Evidence) -> list[str]:
    from reglab.lab.study import teaching

    base = evidence.plan.base
    return [
        *section(
            "What each transform does",
            teaching.gallery_png(base.data, IMAGE_ARMS, SIGNAL_ARMS),
            "the same 8 samples under each transform",
            "The same 8 training samples (first row) under each transform at the study's strength, images and "
            "MNIST-1D signals; mixing draws its partner from the same 8. Each transform should leave the class "
            "recognizable.",
        ),
        *section(
            "Decision boundaries on two moons",
            teaching.moons_png(),
            "decision boundary and confidence of baseline, Mixup and label smoothing",
            "A 2×64 MLP trained with reglab on noisy two-moons data (scikit-learn make_moons, 300 points, noise 0.3): "
            "the colour is the predicted probability of the orange class, the black line the decision boundary. "
            "Mixup and label smoothing widen the band of uncertain predictions between the classes.",
        ),
    ]
