"""Learning-curve figure of one run: train vs validation loss and accuracy, the learning rate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reglab._files import atomic_write

LOSS_LABELS = {
    "cross_entropy": "cross-entropy loss",
    "mse": "mean squared error",
    "mae": "mean absolute error",
    "huber": "Huber loss",
}


def plot_curves(
    history: Sequence[dict[str, Any]],
    path: str | Path,
    best_epoch: int | None = None,
    title: str = "",
    loss: str = "cross_entropy",
) -> None:
    """Save ``path`` (PNG): the figure of ``curves_figure``."""
    import matplotlib.pyplot as plt

    fig = curves_figure(history, best_epoch, title, loss)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def curves_figure(
    history: Sequence[dict[str, Any]], best_epoch: int | None = None, title: str = "", loss: str = "cross_entropy"
) -> Any:
    """Loss and accuracy (when recorded: not for regression) per epoch, the best epoch marked by
    a dashed line; the learning rate per epoch when it changed (a schedule, a warm-up); per-layer
    gradient norms when recorded. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    panels = [("loss", LOSS_LABELS[loss])] + ([("acc", "accuracy")] if "train_acc" in history[0] else [])
    layers = sorted(
        (k for k in history[0] if k.startswith("grad_norm_") and k.rsplit("_", 1)[1].isdigit()),
        key=lambda k: int(k.rsplit("_", 1)[1]),
    )
    lrs = [r["lr"] for r in history]
    scheduled = len(set(lrs)) > 1
    count = len(panels) + scheduled + bool(layers)
    fig, axes = plt.subplots(1, count, figsize=(5 * count, 4), constrained_layout=True, squeeze=False)
    if scheduled:  # the lr each epoch ran at
        ax = axes[0][len(panels)]
        ax.plot(epochs, lrs, color="tab:purple", marker="." if len(epochs) < 40 else None)
        if max(lrs) > 20 * min(v for v in lrs if v > 0):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate η")
        ax.set_title("learning rate")
        ax.grid(alpha=0.3)
    if layers:  # vanishing / exploding gradients: one line per layer, log scale
        ax = axes[0][-1]
        for k in layers:
            ax.plot(epochs, [r[k] for r in history], label=f"layer {k.rsplit('_', 1)[1]}")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean gradient norm ‖∂L/∂W‖")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax, (metric, label) in zip(axes[0], panels):
        ax.plot(epochs, [r[f"train_{metric}"] for r in history], label="train")
        ax.plot(epochs, [r[f"valid_{metric}"] for r in history], label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig
