"""Quality: does each regularizer lower the final validation loss of the overfitting baseline?

The baseline is the spine's MLP (2x256, ReLU, Adam lr 1e-3, batch 100, 100 epochs) on
MNIST-1D. Each arm changes one thing, at the strength given below; every arm runs for the
same seeds. Printed per arm: final validation loss (mean ± std over seeds), its ratio to the
baseline's (ours / baseline), test accuracy, and the first layer's fraction of weights that are
0 or below 1e-6 in magnitude.

    python benchmarks/regularizers.py [--seeds 0,1,2] [--epochs 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

from reglab.data import load_data
from reglab.lab.recipe import Recipe
from reglab.lab.run import train_recipe

ARMS = {
    "baseline": {},
    "l2 (penalty 1e-3)": {"regularization.l2": 1e-3},
    "dropout 0.3": {"model.dropout": 0.3},
    "input noise 0.3": {"regularization.input_noise": 0.3},
    "shift 4": {"augment.shift": 4},
    "label smoothing 0.1": {"mixing.label_smoothing": 0.1},
    "mixup 0.4": {"mixing.mixup_alpha": 0.4},
    "l1 proximal 0.5": {"optimizer.options.l1_proximal": 0.5},
    "l1 penalty 1e-3": {"regularization.l1": 1e-3},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = Recipe().updated({"training.epochs": args.epochs})
    results = {}
    print(f"{'arm':22} {'final valid loss':>18} {'/ baseline':>10} {'test acc':>9} {'1st layer ~0':>13} {'s/run':>6}")
    for arm in args.arms.split(","):
        losses, accs, tiny, seconds = [], [], [], []
        for seed in seeds:
            recipe = base.updated({**ARMS[arm], "training.seed": seed})
            start = time.perf_counter()
            result = train_recipe(recipe)
            seconds.append(time.perf_counter() - start)
            losses.append(result.history[-1]["valid_loss"])
            accs.append(result.summary["test_acc"])
            tiny.append(result.history[-1]["first_tiny_frac"])
        results[arm] = statistics.mean(losses)
        spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
        print(
            f"{arm:22} {statistics.mean(losses):10.3f} ± {spread:5.3f} "
            f"{results[arm] / results.get('baseline', results[arm]):10.3f} "
            f"{statistics.mean(accs):9.3f} {statistics.mean(tiny):13.3f} {statistics.mean(seconds):6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    load_data(Recipe().data, 0)  # generate/cache MNIST-1D before timing
    main()
