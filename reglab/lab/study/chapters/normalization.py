"""The normalization study: batch, layer and group norm against the batch size and the learning
rate; batch norm's running statistics at inference; layer norm in an RNN (TECHNIQUES.md section 8).

The 2×256 MLP with SGD (momentum 0.9, η = 0.01) on 800 MNIST-1D training samples for each norm
(none, batch, layer, group of 8) at batch sizes 2, 8, 32 and 128; no norm and batch norm at 10×
the learning rate; the 1-D CNN with no, batch, instance and layer norm; a tanh RNN (Adam) with
and without layer norm inside the recurrence. Every batch-norm run is also evaluated with the
statistics of each test batch (its training mode) besides its running averages.
"""

from __future__ import annotations

import numpy as np

from reglab.lab.study.chapters.common import mean_line, paired_values, points
from reglab.lab.study.chapters.spec import ArmSpec, section
from reglab.lab.study.claims import Claim, Evidence, Finding, metric, paired_finding
from reglab.lab.study.panels import Panel, bars_png, panels_png

NORMS = ("none", "batch", "layer", "group")
BATCHES = (2, 8, 32, 128)
LR = 0.01
SMALL, REFERENCE = 2, 32  # batch norm's degradation: test loss at batch 2 minus at batch 32

BASE = {
    "data.train_size": 800,
    "training.epochs": 15,
    "optimizer.name": "sgd",
    "optimizer.lr": LR,
    "optimizer.options.momentum": 0.9,
}


def arm(norm: str, batch: int) -> str:
    return f"{norm}-batch-{batch}"


ARMS: dict[str, ArmSpec] = {
    arm(n, b): ArmSpec(
        f"MLP, {n} norm, batch size {b}", {"model.norm": n, "data.batch_size": b}, versus=arm("none", b)
    )  # fmt: skip
    for n in NORMS
    for b in BATCHES
}
ARMS.update({
    "none-high-lr": ArmSpec(f"MLP, no norm, η = {10 * LR:g} (10×), batch 32", {"optimizer.lr": 10 * LR,
                            "data.batch_size": 32}, versus="none-high-lr"),
    "batch-high-lr": ArmSpec(f"MLP, batch norm, η = {10 * LR:g}, batch 32", {"model.norm": "batch", "optimizer.lr":
                             10 * LR, "data.batch_size": 32}, versus="none-high-lr"),
    **{f"cnn-{n}": ArmSpec(f"1-D CNN, {n} norm, batch 32", {"model.kind": "cnn", "model.norm": n,
                           "data.batch_size": 32}, versus="cnn-none") for n in ("none", "batch", "instance", "layer")},
    "rnn-none": ArmSpec("tanh RNN, Adam η = 1e-3, batch 32", {"model.kind": "rnn", "model.depth": 1,
                        "optimizer.name": "adam", "optimizer.lr": 1e-3, "optimizer.options": {},
                        "data.batch_size": 32}, versus="rnn-none"),
    "rnn-layer": ArmSpec("the same with layer norm inside the recurrence", {"model.kind": "rnn", "model.depth": 1,
                         "model.norm": "layer", "optimizer.name": "adam", "optimizer.lr": 1e-3,
                         "optimizer.options": {}, "data.batch_size": 32}, versus="rnn-none"),
})  # fmt: skip


def _degradation(evidence: Evidence, norm: str) -> dict[int, float]:
    """seed -> test loss at batch SMALL minus at batch REFERENCE."""
    small, ref = evidence.values(arm(norm, SMALL), "test_loss"), evidence.values(arm(norm, REFERENCE), "test_loss")
    return {s: small[s] - ref[s] for s in sorted(set(small) & set(ref))}


def _bn_degrades(other: str):
    def measure(evidence: Evidence) -> Finding:
        bn = _degradation(evidence, "batch")
        pairs = {n: (_degradation(evidence, n), bn) for n in ("layer", "group")}
        return paired_values(pairs, other, (f"{other} norm", "batch norm"), lower=True)

    return measure


def _running_stats(batch: int):
    def measure(evidence: Evidence) -> Finding:
        pairs = {}
        for b in BATCHES:
            rows = evidence.groups.get(arm("batch", b), [])
            pairs[str(b)] = ({r["seed"]: metric(r, "test_acc_batch_stats") for r in rows},
                             {r["seed"]: metric(r, "test_acc") for r in rows})  # fmt: skip
        return paired_values(pairs, str(batch), ("batch statistics", "running statistics"), lower=True)

    return measure


CLAIMS = (
    Claim(
        "batch-norm-larger-lr",
        "Batch norm lets a larger learning rate train.",
        f"The final validation loss at η = {10 * LR:g} (10×), batch-high-lr against none-high-lr seed by seed (paired "
        "t-test): holds if lower with p < 0.05, does not hold if higher with p < 0.05.",
        lambda ev: paired_finding(
            ev, "batch-high-lr", "none-high-lr", "final_valid_loss", lower=True, label="final validation loss"
        ),  # fmt: skip
    ),
    *(
        Claim(
            f"batch-norm-small-batches-vs-{n}",
            f"Batch norm degrades at small batches while layer and group norm do not: against {n} norm.",
            f"Each norm's degradation, its test loss at batch {SMALL} minus at batch {REFERENCE}, per seed; {n} norm's "
            "against batch norm's (paired t-test, Holm over layer and group): holds if smaller with p < 0.05, does "
            "not hold if larger with p < 0.05.",
            _bn_degrades(n),
        )
        for n in ("layer", "group")
    ),
    *(
        Claim(
            f"running-statistics-batch-{b}",
            f"Inference must use the running statistics: batch norm trained at batch {b}.",
            f"The test accuracy of batch-batch-{b} evaluated with the statistics of each test batch of {b} (training "
            "mode) against its running statistics (evaluation mode), seed by seed (paired t-test, Holm over the "
            f"{len(BATCHES)} batch sizes): holds if lower with p < 0.05, does not hold if higher with p < 0.05.",
            _running_stats(b),
        )
        for b in BATCHES
    ),
    Claim(
        "layer-norm-helps-rnn",
        "Layer norm helps the RNN.",
        "The test loss of rnn-layer against rnn-none seed by seed (paired t-test): holds if lower with p < 0.05, does "
        "not hold if higher with p < 0.05.",
        lambda ev: paired_finding(ev, "rnn-layer", "rnn-none", "test_loss", lower=True),
    ),
)


def batch_panel(evidence: Evidence) -> Panel:
    lines, spread = {}, {}
    for n in NORMS:
        xs, ys, sd = points(evidence, [arm(n, b) for b in BATCHES], lambda r: r["recipe"]["data"]["batch_size"],
                            "test_loss")  # fmt: skip
        if xs:
            lines[f"{n} norm"], spread[f"{n} norm"] = (xs, ys), sd
    return Panel("test loss against batch size (mean ± std)", "batch size", "test loss", lines, spread, log_x=True,
                 markers=True)  # fmt: skip


def statistics_panel(evidence: Evidence) -> Panel:
    lines = {}
    for key, label in (("test_acc", "running statistics (eval mode)"), ("test_acc_batch_stats",
                                                                        "batch statistics (train mode)")):  # fmt: skip
        xs, ys, _ = points(evidence, [arm("batch", b) for b in BATCHES], lambda r: r["recipe"]["data"]["batch_size"],
                           key)  # fmt: skip
        if xs:
            lines[label] = (xs, ys)
    return Panel("batch norm at inference: test accuracy (mean over seeds)", "batch size (training and evaluation)",
                 "test accuracy", lines, log_x=True, markers=True)  # fmt: skip


def figures(evidence: Evidence) -> list[str]:
    out = []
    if any(evidence.groups.get(arm(n, b)) for n in NORMS for b in BATCHES):
        out += section(
            "Each norm against the batch size",
            panels_png([batch_panel(evidence), statistics_panel(evidence)]),
            "test loss against batch size per norm; batch norm's accuracy with running and batch statistics",
            "Left: the test loss of each norm at batch sizes 2 to 128 (log axis). Batch norm estimates its statistics "
            "from the batch, so at 2 samples they are noise; layer and group norm normalize each sample alone. "
            "Right: batch norm models evaluated with their running averages (as they should be) and with the "
            "statistics of each test batch of the training size.",
        )
    curves = [a for a in ("none-batch-32", "batch-batch-32", "none-high-lr", "batch-high-lr") if evidence.groups.get(a)]
    if curves:
        names = {
            "none-batch-32": f"no norm, η = {LR:g}",
            "batch-batch-32": f"batch norm, η = {LR:g}",
            "none-high-lr": f"no norm, η = {10 * LR:g}",
            "batch-high-lr": f"batch norm, η = {10 * LR:g}",
        }
        panels = [Panel(f"{what} per epoch, batch 32", "epoch", what,
                        {names[a]: mean_line(evidence.groups[a], key) for a in curves})
                  for key, what in (("train_loss", "training loss"), ("valid_loss", "validation loss"))]  # fmt: skip
        out += section(
            "At ten times the learning rate",
            panels_png(panels),
            "training and validation loss per epoch at the base and the 10× learning rate, with and without batch norm",
            "Mean over seeds, with and without batch norm at the base η and at 10×: which of them still trains at "
            "the larger step?",
        )
    cnn = {n: evidence.groups.get(f"cnn-{n}") for n in ("none", "batch", "instance", "layer")}
    if any(cnn.values()):
        groups = {f"cnn, {n} norm": {"test accuracy": (float(np.mean([metric(r, "test_acc") for r in rs])),
                                                       float(np.std([metric(r, "test_acc") for r in rs])))}
                  for n, rs in cnn.items() if rs}  # fmt: skip
        out += section(
            "Norms in a convolutional net",
            bars_png(groups, "test accuracy (mean ± std)"),
            "test accuracy of the 1-D CNN per norm",
            "The 1-D CNN with no norm, batch norm, instance norm (each sample and channel over positions) and layer "
            "norm (each sample over channels and positions), batch 32.",
        )
    rnn = [a for a in ("rnn-none", "rnn-layer") if evidence.groups.get(a)]
    if rnn:
        panel = Panel("tanh RNN: validation loss per epoch (mean over seeds)", "epoch", "validation loss",
                      {a: mean_line(evidence.groups[a], "valid_loss") for a in rnn})  # fmt: skip
        out += section(
            "Layer norm in a recurrent net",
            panels_png([panel], columns=1, size=(7.5, 4.0)),
            "validation loss per epoch of the RNN with and without layer norm",
            "Layer norm inside the recurrence normalizes each step's pre-activation over the hidden units, which "
            "keeps the hidden state's scale steady across the 40 steps.",
        )
    return out
