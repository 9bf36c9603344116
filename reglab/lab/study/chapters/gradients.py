"""The gradients study: vanishing and exploding gradients (TECHNIQUES.md section 10).

An 8-layer MLP (width 64, SGD with momentum 0.9, η = 0.01) on MNIST-1D for every activation
(sigmoid, tanh, ReLU, leaky ReLU with slope 0.01) × init (Xavier, He uniform) × (no norm, batch
norm), with per-layer gradient norms recorded each epoch; ReLU and leaky ReLU at 10× the learning
rate, where units die; and a tanh RNN (64 units) reading the signal step by step with plain SGD
at η = 1, where its gradients explode, with and without clipping by norm (c = 1), next to a GRU
at Adam's η = 1e-3.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reglab.lab.study.chapters.common import seedwise
from reglab.lab.study.chapters.spec import ArmSpec, section
from reglab.lab.study.claims import Claim, Evidence, Finding, first_grad_ratio, paired_finding
from reglab.lab.study.panels import Panel, bars_png, heatmap_png, panels_png

DEPTH, WIDTH, LR = 8, 64, 0.01
ACTS = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "leaky-relu": "leaky_relu"}
INITS = {"xavier": "xavier_uniform", "he": "he_uniform"}
VANISHED, KEPT = -2.0, -1.0  # log10 first/last gradient norm: two orders smaller; within one order
CLIP = 1.0
RNN_LR = 1.0

BASE = {
    "model.depth": DEPTH,
    "model.width": WIDTH,
    "optimizer.name": "sgd",
    "optimizer.lr": LR,
    "optimizer.options.momentum": 0.9,
    "training.epochs": 20,
    "training.grad_norms": True,
}


def mlp_arm(act: str, init: str, bn: bool = False) -> str:
    return f"{act}-{init}" + ("-bn" if bn else "")


def mlp_arms() -> list[str]:
    return [mlp_arm(a, i, bn) for bn in (False, True) for a in ACTS for i in INITS]


RNN = {"model.kind": "rnn", "model.depth": 1, "optimizer.name": "sgd", "optimizer.lr": RNN_LR, "optimizer.options": {},
       "training.grad_norm_steps": True}  # fmt: skip
ARMS: dict[str, ArmSpec] = {
    mlp_arm(a, i, bn): ArmSpec(
        f"{DEPTH}×{WIDTH} MLP, {act}, {init} init" + (", batch norm" if bn else ""),
        {"model.activation": act, "model.init": init, **({"model.norm": "batch"} if bn else {})},
        versus=mlp_arm(a, i) if bn else mlp_arm("relu", "he"),
    )
    for bn in (False, True)
    for a, act in ACTS.items()
    for i, init in INITS.items()
}
ARMS.update({
    "relu-high-lr": ArmSpec(f"ReLU, He init, η = {10 * LR:g} (10×)", {"model.init": "he_uniform",
                            "optimizer.lr": 10 * LR}, versus="relu-high-lr"),
    "leaky-relu-high-lr": ArmSpec(f"leaky ReLU (slope 0.01), He init, η = {10 * LR:g}", {"model.activation":
                                  "leaky_relu", "model.init": "he_uniform", "optimizer.lr": 10 * LR},
                                  versus="relu-high-lr"),
    "rnn": ArmSpec(f"tanh RNN, plain SGD η = {RNN_LR:g}: its gradients explode", dict(RNN), versus="rnn"),
    "rnn-clipped": ArmSpec(f"the same, gradients clipped to norm {CLIP:g}", {**RNN, "optimizer.options":
                           {"clip_norm": CLIP}}, versus="rnn"),
    "gru": ArmSpec("GRU, Adam η = 1e-3", {**RNN, "model.kind": "gru", "optimizer.name": "adam", "optimizer.lr": 1e-3},
                   versus="rnn"),
})  # fmt: skip


def _ratio_claim(arm: str, vanishes: bool) -> Any:
    def measure(evidence: Evidence) -> Finding:
        def passes(rows):
            r = first_grad_ratio(rows[arm])
            ok = r < VANISHED if vanishes else r >= KEPT
            return ok, f"first/last layer gradient norm 10^{r:.2f}"

        return seedwise(evidence, [arm], passes)

    return measure


_INIT_FAMILY = tuple(
    (mlp_arm(a, good), mlp_arm(a, bad))
    for a, (good, bad) in {"sigmoid": ("xavier", "he"), "tanh": ("xavier", "he"), "relu": ("he", "xavier"),
                           "leaky-relu": ("he", "xavier")}.items()
)  # fmt: skip


def _init_claim(act: str) -> Claim:
    good, bad = next(p for p in _INIT_FAMILY if p[0].startswith(act + "-"))
    return Claim(
        f"init-suits-{act}",
        f"Xavier init suits sigmoid and tanh, He init suits ReLU: {act} trains faster with {good.split('-')[-1]}.",
        f"The mean training loss over the epochs (lower: faster), {good} against {bad} seed by seed (paired t-test, "
        f"Holm over the {len(_INIT_FAMILY)} activations): holds if lower with p < 0.05, does not hold if higher with "
        "p < 0.05.",
        lambda ev: paired_finding(
            ev, good, bad, "mean_train_loss", lower=True, family=_INIT_FAMILY, label="mean training loss"
        ),  # fmt: skip
    )


def _diverged(row: dict[str, Any]) -> bool:
    """The run's last training loss is not finite, or above twice the chance level (ln K)."""
    loss = row["history"][-1]["train_loss"] if row["history"] else None
    return loss is None or not math.isfinite(loss) or loss > 2 * row["summary"]["chance_loss"]


def _clipping(evidence: Evidence) -> Finding:
    def passes(rows):
        a, b = _diverged(rows["rnn"]), _diverged(rows["rnn-clipped"])
        la, lb = (rows[k]["history"][-1]["train_loss"] for k in ("rnn", "rnn-clipped"))
        top = {k: max((v for r in rows[k]["history"] for v in r.get("grad_norm_steps") or []), default=math.nan)
               for k in ("rnn", "rnn-clipped")}  # fmt: skip
        return a and not b, (
            f"final training loss {la:.3g} unclipped ({'diverged' if a else 'did not diverge'}), {lb:.3g} clipped; "
            f"largest gradient norm {top['rnn']:.3g} / {top['rnn-clipped']:.3g}"
        )

    return seedwise(evidence, ["rnn", "rnn-clipped"], passes)


CLAIMS = (
    Claim(
        "sigmoid-gradients-vanish",
        "Deep sigmoid and tanh nets lose their gradients: sigmoid (first-layer gradients orders of magnitude smaller "
        "than the last layer's).",
        "log10 of the first layer's gradient norm over the last layer's in the first epoch, sigmoid-xavier: holds if "
        f"below {VANISHED:g} (two orders) in every seed, does not hold if in none.",
        _ratio_claim(mlp_arm("sigmoid", "xavier"), True),
    ),
    Claim(
        "tanh-gradients-vanish",
        "Deep sigmoid and tanh nets lose their gradients: tanh.",
        "log10 of the first layer's gradient norm over the last layer's in the first epoch, tanh-xavier: holds if "
        f"below {VANISHED:g} (two orders) in every seed, does not hold if in none.",
        _ratio_claim(mlp_arm("tanh", "xavier"), True),
    ),
    Claim(
        "relu-gradients-kept",
        "ReLU-family nets keep their gradients: ReLU.",
        f"The same ratio for {mlp_arm('relu', 'he')}: holds if at least {KEPT:g} (within one order) in every seed, "
        "does not hold if in none.",
        _ratio_claim(mlp_arm("relu", "he"), False),
    ),
    Claim(
        "leaky-relu-gradients-kept",
        "ReLU-family nets keep their gradients: leaky ReLU.",
        f"The same ratio for {mlp_arm('leaky-relu', 'he')}: holds if at least {KEPT:g} (within one order) in every "
        "seed, does not hold if in none.",
        _ratio_claim(mlp_arm("leaky-relu", "he"), False),
    ),
    *(_init_claim(a) for a in ACTS),
    Claim(
        "leaky-relu-fewer-dead-units",
        "Leaky ReLU leaves fewer dead units than ReLU at a high learning rate.",
        f"The fraction of hidden units whose pre-activation is ≤ 0 on every validation sample, leaky-relu-high-lr "
        f"against relu-high-lr (both η = {10 * LR:g}) seed by seed: holds if lower with p < 0.05, does not hold if "
        "higher with p < 0.05.",
        lambda ev: paired_finding(
            ev, "leaky-relu-high-lr", "relu-high-lr", "dead_frac", lower=True, label="dead-unit fraction"
        ),  # fmt: skip
    ),
    Claim(
        "batch-norm-restores-gradients",
        "Batch norm restores the first layer's gradient.",
        "log10 first/last layer gradient norm in the first epoch, sigmoid-xavier-bn against sigmoid-xavier seed by "
        "seed: holds if higher with p < 0.05, does not hold if lower with p < 0.05.",
        lambda ev: paired_finding(
            ev,
            mlp_arm("sigmoid", "xavier", True),
            mlp_arm("sigmoid", "xavier"),
            "first_grad_ratio",
            lower=False,
            label="log10 first/last gradient norm",
        ),  # fmt: skip
    ),
    Claim(
        "clipping-keeps-rnn-finite",
        "Clipping keeps the RNN finite where it otherwise diverges.",
        f"The tanh RNN at η = {RNN_LR:g} without and with clipping (norm {CLIP:g}); diverged: the last training loss "
        "is not finite or above twice the chance level ln 10: holds if in every seed the unclipped run diverged and "
        "the clipped one did not, does not hold if in none.",
        _clipping,
    ),
)


def gradient_grid(evidence: Evidence, epoch: int) -> tuple[list[str], np.ndarray]:
    """Arms (rows) × layers (columns) of the mean gradient norm in the ``epoch``-th record."""
    rows = [a for a in [*mlp_arms(), "relu-high-lr", "leaky-relu-high-lr"] if evidence.groups.get(a)]
    values = np.full((len(rows), DEPTH + 1), np.nan)
    for i, arm in enumerate(rows):
        for j in range(DEPTH + 1):
            got = [r["history"][epoch].get(f"grad_norm_{j + 1}") for r in evidence.groups[arm] if r["history"]]
            got = [v for v in got if v is not None and math.isfinite(v)]
            if got:
                values[i, j] = float(np.mean(got))
    return rows, values


def rnn_panel(evidence: Evidence) -> Panel:
    lines = {}
    for arm in ("rnn", "rnn-clipped", "gru"):
        rs = evidence.groups.get(arm)
        if rs:
            steps = [v for r in rs[0]["history"] for v in r.get("grad_norm_steps") or []]
            lines[f"{arm} (seed {rs[0]['seed']})"] = (list(range(1, len(steps) + 1)), steps)
    return Panel("recurrent nets: the global gradient norm at every step (before clipping)", "step",
                 "gradient norm ‖g‖", lines, log_y=True)  # fmt: skip


def figures(evidence: Evidence) -> list[str]:
    out = []
    rows, first = gradient_grid(evidence, 0)
    if rows:
        _, last = gradient_grid(evidence, -1)
        out += section(
            "Gradient norm per layer",
            heatmap_png(
                [("first epoch", first), ("last epoch", last)],
                rows,
                [f"{j}" for j in range(1, DEPTH + 2)],
                "mean ‖∂L/∂W_l‖",
            ),  # fmt: skip
            "heatmap of gradient norm per layer and arm at the first and the last epoch",
            "Each row an arm, each column a layer from the input (1) to the read-out (9); the colour is the gradient "
            "norm of that layer's weights (log scale, mean over the epoch's steps and the seeds). Vanishing "
            "gradients show as a row darkening toward the input (left), exploding ones as a row brightening.",
        )
    relu_family = [a for a in mlp_arms() if a.startswith(("relu", "leaky")) and evidence.groups.get(a)]
    relu_family += [a for a in ("relu-high-lr", "leaky-relu-high-lr") if evidence.groups.get(a)]
    if relu_family:
        groups = {}
        for arm in relu_family:
            v = [r["summary"].get("dead_frac") for r in evidence.groups[arm]]
            v = [x for x in v if x is not None]
            groups[arm] = {"dead units": (float(np.mean(v)) if v else math.nan, float(np.std(v)) if v else 0.0)}
        out += section(
            "Dead units",
            bars_png(groups, "fraction of dead hidden units"),
            "fraction of dead ReLU units per arm",
            "The fraction of hidden units whose pre-activation is ≤ 0 for every validation sample at the end "
            "(mean ± std over seeds): a dead ReLU passes no gradient and stays dead; a leaky one still passes 1% "
            "of it.",
        )
    panel = rnn_panel(evidence)
    if panel.lines:
        out += section(
            "Exploding gradients in a recurrent net, and clipping",
            panels_png([panel], columns=1, size=(8, 4.2)),
            "gradient norm per step for the RNN with and without clipping, and the GRU",
            f"The gradient norm at every step of one seed: the tanh RNN at η = {RNN_LR:g} without clipping (its "
            f"spikes are the explosions), the same clipped to norm {CLIP:g} (the norm shown is the one before "
            "clipping), and a GRU with Adam.",
        )
    return out
