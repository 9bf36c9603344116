"""Dropout's mask on CPU (``reglab.regularize.Dropout``: float32 uniforms, kept where u ≥ p)
against torch's (``nn.Dropout``: ``F.dropout``'s ``bernoulli_``), in one process, one thread:

1. the layer alone, forward and backward, on the default mlp's activations (batch 100, width
   256), a single model's and a stacked model's of S = 3 and 6 copies (each copy's mask from its
   own generator, ``reglab.train.stacked_model``);
2. an epoch of the default study's dropout arm (p = 0.2 after both hidden layers, MNIST-1D)
   through ``Trainer.train_epoch``, with either layer in the model.

Rounds alternate between the sides; the figures are medians over rounds; ratios are ours / torch's.

    python benchmarks/dropout.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from reglab.lab.build import build
from reglab.lab.recipe import Recipe
from reglab.lab.study.arms import ARMS
from reglab.regularize import Dropout
from reglab.train.stacked_model import _Dropout

P = 0.2


def per_call(fn, reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def layer_case(copies: int, uniform: bool):
    shape = (100, 256) if copies == 1 else (copies, 100, 256)
    x = torch.randn(*shape, requires_grad=True)
    if copies == 1:
        layer = (Dropout(P) if uniform else nn.Dropout(P)).train()
    else:
        layer = _Dropout(P, [torch.Generator().manual_seed(s) for s in range(copies)], uniform).train()

    def step():
        layer(x).sum().backward()

    return step


def epoch_case(uniform: bool):
    recipe = Recipe().updated(dict(ARMS["dropout"][1]))
    trainer = build(recipe)
    if not uniform:
        for i, layer in enumerate(trainer.model):
            if isinstance(layer, Dropout):
                trainer.model[i] = nn.Dropout(layer.p)
    assert any(type(m) is (Dropout if uniform else nn.Dropout) for m in trainer.model)
    return trainer.train_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = {f"layer, {s} cop{'y' if s == 1 else 'ies'}": (lambda u, s=s: layer_case(s, u), 300) for s in (1, 3, 6)}
    cases["an epoch of the dropout arm"] = (epoch_case, 3)
    for name, (make, reps) in cases.items():
        ours, theirs = make(True), make(False)
        rounds: dict[str, list[float]] = {"ours": [], "torch": []}
        for _ in range(args.rounds):
            rounds["ours"].append(per_call(ours, reps))
            rounds["torch"].append(per_call(theirs, reps))
        a, b = statistics.median(rounds["ours"]), statistics.median(rounds["torch"])
        ratio = statistics.median(x / y for x, y in zip(rounds["ours"], rounds["torch"]))
        unit, scale = ("ms", 1e3) if reps < 10 else ("µs", 1e6)
        print(f"{name}: reglab {a * scale:.1f} {unit}, torch {b * scale:.1f} {unit}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
