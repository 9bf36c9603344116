"""Wall time per epoch of reglab's fit() against a bare PyTorch loop, in one process.

Both train the same model (the baseline MLP 2x256 on MNIST-1D) from the same initial weights
with the same optimizer, batch size and shuffling, and both evaluate the validation set once
per epoch; the bare loop tracks its training loss with ``loss.item()`` per step, as most
hand-written loops do. Rounds alternate between the two so that machine noise hits both; the
figure is the median over rounds of the per-epoch time. A second line adds fit()'s per-epoch
checkpoint, as ``reglab train`` runs it.

    python benchmarks/trainer_overhead.py [--epochs 5] [--rounds 7]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from reglab.data import load_data
from reglab.lab.recipe import Recipe
from reglab.models import build_model
from reglab.train import Checkpointer, fit


def bare_loop(model, data, opt, epochs, batch_size, seed):
    g = torch.Generator().manual_seed(seed)
    x, y, n = data.x_train, data.y_train, len(data.x_train)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        running = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            out = model(x[idx])
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            out = model(data.x_valid)
            F.cross_entropy(out, data.y_valid).item()
            (out.argmax(1) == data.y_valid).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    recipe = Recipe()
    data = load_data(recipe.data, 0)
    torch.manual_seed(0)
    init = build_model(recipe.model, data.input_shape, data.num_classes)
    bs = recipe.data.batch_size

    def timed(run) -> float:
        model = copy.deepcopy(init)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        run(model, opt)
        return (time.perf_counter() - start) / args.epochs

    tmp = Path(tempfile.mkdtemp())
    sides = {
        "bare": lambda m, o: bare_loop(m, data, o, args.epochs, bs, 0),
        "fit": lambda m, o: fit(m, data, o, epochs=args.epochs, batch_size=bs),
        "fit+checkpoint": lambda m, o: fit(
            m, data, o, epochs=args.epochs, batch_size=bs, callbacks=[Checkpointer(tmp / "c.pt")]
        ),
    }
    times = {k: [] for k in sides}
    for name, run in sides.items():  # warm-up
        timed(run)
    for _ in range(args.rounds):
        for name, run in sides.items():
            times[name].append(timed(run))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"threads={torch.get_num_threads()} epochs/round={args.epochs} rounds={args.rounds}")
    for name in sides:
        print(f"{name:>15}: {1000 * med[name]:7.1f} ms/epoch")
    print(f"ratio fit / bare            = {med['fit'] / med['bare']:.3f}")
    print(f"ratio fit+checkpoint / bare = {med['fit+checkpoint'] / med['bare']:.3f}")


if __name__ == "__main__":
    main()
