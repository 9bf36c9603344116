"""Quality: do large batches reach sharper minima (Keskar et al. 2016; TECHNIQUES.md section 2)?

The same MLP (2x256, ReLU, Adam lr 1e-3) on scikit-learn's digits, trained with small batches
and with the whole training set per step (full-batch gradient descent), each long enough to fit
the training set. Printed per batch size, mean ± std over seeds: steps taken, final training
loss, test accuracy, and Keskar's sharpness of the final weights on the training loss at two box
sizes (ε = 1e-3 and 5e-4, the paper's). Keskar et al. report sharper minima and a lower test
accuracy for the large batch.

    python benchmarks/sharpness.py [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import statistics

from reglab.data import load_data
from reglab.lab.recipe import Recipe
from reglab.lab.run import train_recipe
from reglab.train import LOSSES
from reglab.train.sharpness import sharpness

RUNS = {  # batch size -> epochs: both fit the training set (training loss well below 0.01)
    16: 60,
    "full": 600,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = Recipe().updated({"data.name": "digits"})
    print(
        f"{'batch':>6} {'steps':>6} {'train loss':>12} {'test acc':>14} {'sharpness 1e-3':>16} {'sharpness 5e-4':>16}"
    )
    for batch, epochs in RUNS.items():
        rows = []
        for seed in seeds:
            data = load_data(base.data, seed)
            size = len(data.x_train) if batch == "full" else batch
            changes = {
                "data.batch_size": size,
                "training.epochs": epochs,
                "training.seed": seed,
                "training.sharpness": 1e-3,
            }
            result = train_recipe(base.updated(changes))
            small_box = sharpness(result.model, data.x_train, data.y_train, LOSSES["cross_entropy"], 5e-4, seed=seed)
            steps = epochs * -(-len(data.x_train) // size)
            s = result.summary
            rows.append((steps, result.history[-1]["train_loss"], s["test_acc"], s["sharpness"], small_box))
        cols = list(zip(*rows))
        fmt = lambda v: f"{statistics.mean(v):.4g} ± {statistics.stdev(v) if len(v) > 1 else 0:.2g}"  # noqa: E731
        print(
            f"{batch!s:>6} {cols[0][0]:>6} {fmt(cols[1]):>12} {fmt(cols[2]):>14} {fmt(cols[3]):>16} {fmt(cols[4]):>16}"
        )


if __name__ == "__main__":
    main()
