"""The penalties study: L2 against weight decay with SGD and Adam, L1's exact zeros, and
feature selection by L1 (TECHNIQUES.md section 4)."""

from __future__ import annotations

from typing import Any

from reglab.lab.study.chapters.spec import ArmSpec, section
from reglab.lab.study.claims import Claim, Evidence, every_seed, paired_finding

L2 = 1e-2  # the regularization study's l2 strength (λ of the coupled decay; α of (α/2)‖W‖²)
L1_PROXIMAL = 0.1  # the regularization study's proximal L1 strength
L1_SUBGRADIENT = 1e-4  # α of α‖W‖₁: at initialization the penalty (~0.4) is of the order of the data loss
NOISE_INPUTS = 40
SGD = {"optimizer.name": "sgd", "optimizer.lr": 0.1}

ARMS = {
    "baseline": ArmSpec("Adam, no penalty", {}),
    "sgd": ArmSpec("plain SGD, η = 0.1, no penalty", dict(SGD), versus="sgd"),
    "sgd-l2": ArmSpec(
        f"SGD with the penalty (α/2)‖W‖² in the loss, α = {L2:g}", {**SGD, "regularization.l2": L2}, versus="sgd"
    ),  # fmt: skip
    "sgd-decay": ArmSpec(
        f"SGD with weight decay λ = {L2:g} in the update (W ← W − η(∇L + λW))",
        {**SGD, "optimizer.options.weight_decay": L2},
        versus="sgd",
    ),  # fmt: skip
    "l2": ArmSpec(
        f"Adam with coupled L2, λ = {L2:g} (λW added to the gradient)", {"optimizer.options.weight_decay": L2}
    ),
    "adamw": ArmSpec(
        f"AdamW: decoupled decay at the same λ = {L2:g} (W ← W − ηλW)",
        {"optimizer.options.weight_decay": L2, "optimizer.options.decoupled": True},
    ),  # fmt: skip
    "l1-subgradient": ArmSpec(
        f"the L1 penalty α‖W‖₁ in the loss, α = {L1_SUBGRADIENT:g} (subgradient sign(W))",
        {"regularization.l1": L1_SUBGRADIENT},
    ),  # fmt: skip
    "l1-proximal": ArmSpec(
        f"proximal L1, λ = {L1_PROXIMAL:g}: soft-threshold by ηλ after each step",
        {"optimizer.options.l1_proximal": L1_PROXIMAL},
    ),  # fmt: skip
    "elastic-net": ArmSpec(
        f"proximal L1 λ₁ = {L1_PROXIMAL:g} and coupled L2 λ₂ = {L2:g} together",
        {"optimizer.options.l1_proximal": L1_PROXIMAL, "optimizer.options.weight_decay": L2},
    ),
    "noise-inputs": ArmSpec(
        f"{NOISE_INPUTS} pure-noise inputs appended, no penalty", {"data.noise_features": NOISE_INPUTS}
    ),  # fmt: skip
    "noise-inputs-l2": ArmSpec(
        f"{NOISE_INPUTS} noise inputs, coupled L2 λ = {L2:g}",
        {"data.noise_features": NOISE_INPUTS, "optimizer.options.weight_decay": L2},
        versus="noise-inputs",
    ),  # fmt: skip
    "noise-inputs-l1": ArmSpec(
        f"{NOISE_INPUTS} noise inputs, proximal L1 λ = {L1_PROXIMAL:g}",
        {"data.noise_features": NOISE_INPUTS, "optimizer.options.l1_proximal": L1_PROXIMAL},
        versus="noise-inputs",
    ),  # fmt: skip
}


def largest_differences(evidence: Evidence, a: str, b: str) -> dict[str, Any]:
    """The largest absolute difference between two arms, seed by seed: in every epoch's training
    and validation loss (stored with the trials) and in the final weights (the runs' checkpoints
    in the study's folder; ``None`` when they are not there, e.g. runs done on other machines)."""
    import glob

    import torch

    from reglab.train.checkpoint import load

    seeds = sorted({r["seed"] for r in evidence.groups.get(a, [])} & {r["seed"] for r in evidence.groups.get(b, [])})
    rows = {(r["arm"], r["seed"]): r for r in evidence.rows}
    history = first = 0.0
    weights: float | None = 0.0
    for seed in seeds:
        ha, hb = rows[(a, seed)]["history"], rows[(b, seed)]["history"]
        if ha and hb:  # where a rounding difference starts, before training amplifies it
            first = max(first, *(abs((ha[0][k] or 0) - (hb[0][k] or 0)) for k in ("train_loss", "valid_loss")))
        for ra, rb in zip(ha, hb):
            for key in ("train_loss", "valid_loss"):
                x, y = ra.get(key), rb.get(key)
                history = max(history, abs(x - y) if x is not None and y is not None else float("inf"))
        if len(ha) != len(hb):
            history = float("inf")
        found = [
            sorted(glob.glob(str(evidence.out / "runs" / f"{arm}-seed{seed}-*" / "checkpoint.pt"))) if evidence.out
            else []
            for arm in (a, b)
        ]  # fmt: skip
        if weights is None or not all(found):
            weights = None
            continue
        ma, mb = (load(f[-1])["trainer"]["model"] for f in found)
        for k in ma:
            if torch.is_floating_point(ma[k]):
                weights = max(weights, float((ma[k].double() - mb[k].double()).abs().max()))
    return {"seeds": len(seeds), "history": history, "first_epoch": first, "weights": weights}


ROUNDING_SHARE = 0.01  # two implementations of one update differ by rounding: ≪ what the update itself changes


def _same_training(evidence: Evidence):
    from reglab.lab.study.claims import FAILS, HOLDS, INCONCLUSIVE, Finding

    missing = evidence.lacking("sgd", "sgd-l2", "sgd-decay")
    if missing:
        return Finding(INCONCLUSIVE, f"no finished trial of {missing}", {}, "run the study")
    diff = largest_differences(evidence, "sgd-l2", "sgd-decay")
    effect = largest_differences(evidence, "sgd-l2", "sgd")  # what the penalty itself changes
    parts = ["history"] + (["weights"] if diff["weights"] is not None and effect["weights"] is not None else [])
    share = max(diff[p] / effect[p] if effect[p] else float("inf") for p in parts)
    words = (
        f"largest difference between the two over {diff['seeds']} seeds: {diff['history']:.2g} in the per-epoch losses "
        f"(the penalty itself moves them by up to {effect['history']:.2g}), "
        + (
            f"{diff['weights']:.2g} in the final weights (the penalty: {effect['weights']:.2g})"
            if "weights" in parts
            else "final weights not compared (the runs' checkpoints are not in this folder)"
        )  # fmt: skip
        + f": {share:.2%} of the penalty's own effect; after the first epoch the losses differed by "
        f"{diff['first_epoch']:.2g}"
    )
    numbers = {"difference": diff, "penalty_effect": effect, "share": share}
    return Finding(HOLDS if share <= ROUNDING_SHARE else FAILS, words, numbers)


def _adam_differs(evidence: Evidence):
    from reglab.lab.study.claims import FAILS, HOLDS, INCONCLUSIVE, Finding

    missing = evidence.lacking("l2", "adamw")
    if missing:
        return Finding(INCONCLUSIVE, f"no finished trial of {missing}", {}, "run the study")
    diff = largest_differences(evidence, "l2", "adamw")
    better = paired_finding(evidence, "adamw", "l2", "test_loss", lower=True)
    a, b = better.numbers["arm_mean"], better.numbers["versus_mean"]
    which = (
        f"here adamw generalized {'better' if a < b else 'worse'} (test loss {a:.3f} vs l2 {b:.3f}, p = "
        f"{better.numbers['p']:.2g})"
    )
    words = f"largest difference in the per-epoch losses: {diff['history']:.3g}; {which}"
    effect = largest_differences(evidence, "l2", "baseline")  # what coupled L2 itself changes
    share = diff["history"] / effect["history"] if effect["history"] else float("inf")
    words += f" ({share:.0%} of what L2 itself changes against the baseline)"
    verdict = HOLDS if share > ROUNDING_SHARE else FAILS
    return Finding(verdict, words, {**diff, "share": share, "test_loss_adamw": a, "test_loss_l2": b,
                                    "p": better.numbers["p"]})  # fmt: skip


CLAIMS = (
    Claim(
        "l2-is-weight-decay-for-sgd",
        "L2 with SGD is weight decay: the penalty λ‖W‖² in the loss and decay 2λ in the update train identically.",
        "The largest absolute difference between sgd-l2 and sgd-decay, seed by seed, in every epoch's training and "
        "validation loss and in the final weights, as a share of the largest difference between sgd-l2 and plain SGD "
        f"(what the penalty itself changes): holds if at most {ROUNDING_SHARE:.0%} (float32 rounding, which chaotic "
        "training can amplify, but not to the size of the effect), does not hold otherwise.",
        _same_training,
        depends="Only for SGD (with or without momentum): an adaptive optimizer divides the penalty's gradient by its "
        "running scale, so coupled L2 and decoupled decay differ (next claim). Identical in exact arithmetic; in "
        "float32 reglab applies plain SGD's decay as W ← (1 − ηλ)W in the step's pass (as torch.optim.AdamW applies "
        "its decay), which rounds differently from adding λW to the gradient, and many steps of training can amplify "
        "a rounding difference: compare the first epoch's difference with the last.",
    ),
    Claim(
        "adam-l2-differs-from-adamw",
        "For adaptive optimizers L2 and weight decay differ: Adam with coupled L2 is not AdamW.",
        f"The largest difference in the per-epoch losses between l2 (Adam, coupled λ = {L2:g}) and adamw (decoupled, "
        "same λ), as a share of the largest difference between l2 and the baseline (what coupled L2 itself changes): "
        f"holds if above {ROUNDING_SHARE:.0%} (more than rounding), does not hold otherwise; which one generalized "
        "better is reported (paired test of test loss).",
        _adam_differs,
    ),
    Claim(
        "proximal-l1-exact-zeros",
        "Proximal L1 gives exact zeros: a sparse first layer.",
        f"The fraction of exactly-zero first-layer weights of l1-proximal (λ = {L1_PROXIMAL:g}): holds if at least "
        "50% in every seed, does not hold if below 50% in every seed.",
        lambda ev: every_seed(
            ev, ["l1-proximal"], "first_zero_frac", lambda v: v >= 0.5, "has ≥ 50% zeros", "first-layer zero fraction"
        ),  # fmt: skip
    ),
    Claim(
        "subgradient-and-l2-no-zeros",
        "The L1 subgradient and L2 give no exact zeros (they shrink weights towards 0 without reaching it).",
        "The fraction of exactly-zero first-layer weights of l1-subgradient and l2: holds if below 0.1% in every "
        "seed, does not hold if at least 0.1% in every seed.",
        lambda ev: every_seed(
            ev,
            ["l1-subgradient", "l2"],
            "first_zero_frac",
            lambda v: v < 1e-3,
            "has < 0.1% zeros",
            "first-layer zero fraction",
        ),  # fmt: skip
    ),
    Claim(
        "l2-shrinks-all-weights",
        "L2 shrinks all the weights: smaller weights everywhere, none exactly zero.",
        "The root mean square of the first layer's weights, l2 against the baseline seed by seed (paired t-test): "
        "holds if lower with p < 0.05, does not hold if higher with p < 0.05.",
        lambda ev: paired_finding(ev, "l2", "baseline", "first_rms", lower=True, label="first-layer RMS weight"),
    ),
    Claim(
        "l1-selects-features",
        "L1 selects features: it puts less weight on useless inputs than L2 does.",
        f"With {NOISE_INPUTS} pure-noise inputs appended to MNIST-1D's 40, the ratio of the first layer's mean column "
        "norm on the noise inputs to that on the signal inputs, noise-inputs-l1 against noise-inputs-l2 seed by "
        "seed: holds if lower with p < 0.05, does not hold if higher with p < 0.05.",
        lambda ev: paired_finding(
            ev, "noise-inputs-l1", "noise-inputs-l2", "noise_ratio", lower=True, label="noise / signal column norm"
        ),  # fmt: skip
    ),
)


def figures(evidence: Evidence) -> list[str]:
    from reglab.lab.study import figures, teaching

    out = []
    shown = [a for a in ("baseline", "l1-subgradient", "l1-proximal", "l2", "elastic-net") if evidence.groups.get(a)]
    if shown:
        hist = {a: evidence.groups[a][0]["weights"] for a in shown}
        every = {a: evidence.groups[a][0].get("zero_frac") or 0.0 for a in shown}
        out += section(
            "First-layer weights under each penalty",
            figures.weight_histograms(hist, all_zero=every),
            "first-layer weight histograms per penalty",
            "The first layer's weights of one run (the first seed) per arm, log counts so that exact zeros show. "
            "Proximal L1 (and the elastic net) pile weights at exactly 0; the subgradient and L2 shrink the spread "
            "without reaching 0.",
        )
    fs = [a for a in ("noise-inputs", "noise-inputs-l2", "noise-inputs-l1") if evidence.groups.get(a)]
    if fs:
        out += section(
            "Which inputs keep weight",
            figures.column_norms(
                {a: [r["weights"].get("columns") or [] for r in evidence.groups[a]] for a in fs}, NOISE_INPUTS
            ),  # fmt: skip
            "first-layer weight norm per input",
            f"The norm of the first layer's weights on each input (mean over seeds): inputs 1-40 are MNIST-1D's "
            f"signal, the {NOISE_INPUTS} on the grey band are pure noise. A feature-selecting penalty leaves the "
            "noise inputs near zero.",
        )
    out += section(
        "A noisy curve fit, with and without L2",
        teaching.curve_fit_png(),
        "MLP fits of a noisy sine without and with L2",
        "A 2×64 MLP trained with reglab's Adam on 20 noisy points of a sine: without a penalty it bends through the "
        "noise; with the L2 penalty it stays close to the true curve.",
    )
    out += section(
        "The constraint picture",
        teaching.constraint_png(),
        "L1 diamond and L2 circle on the loss contours, and the penalized paths",
        "A 2-weight linear regression: the loss contours, the L1 ball (diamond) and the L2 ball (circle), and the "
        "penalized solution as the strength α grows (solved with reglab's proximal and coupled optimizers). The L1 "
        "path reaches an axis: one weight exactly 0; the L2 path shrinks both weights together.",
    )
    return out
