"""Speed of the batched augmentations, in one process.

For a batch of 256 images (1x28x28) and of 256 signals (1x40), each augmentation and
Mixup/CutMix is timed (median of repeats) and printed as
- cost/step: its time over one training step (forward, backward, Adam) of the default CNN on
  the same batch (goal <= 0.10);
- loop/batched: a per-sample Python loop applying the same function to each sample, over the
  batched call (goal >= 10).

    python benchmarks/augment.py [--device cpu|cuda] [--reps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from reglab.augment import cutmix, cutout, erase, flip, mixup, rotate, scale, shift
from reglab.lab.recipe import ModelConfig
from reglab.models import build_model
from reglab.regularize import gaussian_noise


def timed(fn, device, reps) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(0)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    print(f"{'batch':8} {'augmentation':14} {'ms':>7} {'cost/step':>10} {'loop ms':>9} {'loop/batched':>13}")
    for name, shape in (("images", (256, 1, 28, 28)), ("signals", (256, 1, 40))):
        x = torch.randn(shape, device=device)
        y = torch.randint(0, 10, (256,), device=device)
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind="cnn"), shape[1:], 10).to(device)
        opt = torch.optim.Adam(model.parameters())

        def train_step():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        step = timed(train_step, device, args.reps)
        augs = {
            "flip": lambda xb: flip(xb, g, p=0.5),
            "shift": lambda xb: shift(xb, g, 4),
            "shift-circ": lambda xb: shift(xb, g, 4, mode="circular"),
            "scale": lambda xb: scale(xb, g, 0.9, 1.1),
            "cutout": lambda xb: cutout(xb, g, 8),
            "erase": lambda xb: erase(xb, g, p=0.5),
            "noise": lambda xb: gaussian_noise(xb, g, 0.1),
            "mixup": lambda xb: mixup(xb, y[: len(xb)], g, alpha=0.4, num_classes=10, mode="elem")[0],
            "cutmix": lambda xb: cutmix(xb, y[: len(xb)], g, alpha=1.0, num_classes=10, mode="elem")[0],
        }
        if len(shape) == 4:
            augs["rotate"] = lambda xb: rotate(xb, g, 15.0)
        print(f"{name:8} {'train step':14} {1000 * step:7.2f}")
        for aug, fn in augs.items():
            batched = timed(lambda: fn(x), device, args.reps)
            loop = timed(lambda: [fn(x[i : i + 1]) for i in range(len(x))], device, max(3, args.reps // 10))
            print(
                f"{name:8} {aug:14} {1000 * batched:7.3f} {batched / step:10.3f} {1000 * loop:9.2f} "
                f"{loop / batched:13.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
