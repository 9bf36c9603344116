"""The report's figures (matplotlib, Agg), each returned as PNG bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    _plt().close(fig)
    return buf.getvalue()


def mean_curve(histories: Sequence[Sequence[dict[str, Any]]], key: str) -> np.ndarray:
    """Mean of ``key`` per epoch over the seeds that reached that epoch (runs may stop early)."""
    length = max(len(h) for h in histories)
    out = np.full(length, np.nan)
    for e in range(length):
        values = [h[e][key] for h in histories if e < len(h) and h[e][key] is not None]
        if values:
            out[e] = float(np.mean(values))
    return out


def _common_top(valid: Sequence[np.ndarray]) -> float | None:
    """A shared y-limit that shows every arm's validation curve (the training curves' first
    epochs may be cut), in the loss's own units, unless one arm diverges far above the others:
    the highest validation loss, capped at twice the arms' median highest."""
    tops = [float(np.max(v[np.isfinite(v)])) for v in valid if np.isfinite(v).any()]
    if not tops:
        return None
    return min(max(tops), 2 * float(np.median(tops))) * 1.05


def learning_curves(curves: dict[str, list], order: Sequence[str], loss: str = "cross-entropy loss") -> bytes:
    """Small multiples: mean train vs validation loss per arm, the best epoch marked."""
    plt = _plt()
    n = len(order)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.6 * cols, 2.7 * rows), sharey=True, squeeze=False, constrained_layout=True
    )
    top = _common_top([mean_curve(curves[a], "valid_loss") for a in order])
    for ax, arm in zip(axes.flat, order):
        train, valid = mean_curve(curves[arm], "train_loss"), mean_curve(curves[arm], "valid_loss")
        epochs = np.arange(1, len(valid) + 1)
        ax.plot(epochs, train, label="train")
        ax.plot(epochs, valid, label="validation")
        if np.isfinite(valid).any():
            best = int(np.nanargmin(valid)) + 1
            ax.axvline(best, color="gray", linestyle="--", linewidth=1)
            ax.set_title(f"{arm} (best epoch {best})", fontsize=10)
        else:  # every seed's loss was NaN/Inf from the first epoch
            ax.set_title(f"{arm} (diverged)", fontsize=10)
        if top is not None:
            ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.supxlabel("epoch")
    fig.supylabel(f"{loss} (mean over seeds)")
    return _png(fig)


def validation_overlay(curves: dict[str, list], order: Sequence[str]) -> bytes:
    """Every arm's mean validation loss on one axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5), constrained_layout=True)
    cmap = plt.get_cmap("tab20")
    for i, arm in enumerate(order):
        valid = mean_curve(curves[arm], "valid_loss")
        style = {"color": "black", "linewidth": 2.5} if arm == "baseline" else {"color": cmap(i % 20), "linewidth": 1.3}
        ax.plot(np.arange(1, len(valid) + 1), valid, label=arm, **style)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (mean over seeds)")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter

    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2g"))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)


def weight_histograms(weights: dict[str, dict[str, Any]]) -> bytes:
    """First-layer weight histograms (one seed per arm), log counts so exact zeros show."""
    plt = _plt()
    n = len(weights)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), squeeze=False, constrained_layout=True)
    for ax, (arm, h) in zip(axes.flat, weights.items()):
        ax.stairs(np.maximum(h["counts"], 0.5), h["edges"], fill=True, alpha=0.7)
        total = sum(h["counts"])
        ax.set_title(f"{arm}: {h['zeros'] / max(total, 1):.0%} exactly zero", fontsize=10)
        ax.set_yscale("log")
        ax.set_xlabel("first-layer weight")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("count")
    return _png(fig)


def metric_bars(board: Sequence[dict[str, Any]], metric: str = "test_acc", label: str = "test accuracy") -> bytes:
    """``metric`` per arm (``test_acc``, or ``test_loss`` for a regression study), mean ± std
    over seeds, baseline as a line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.65 * len(board)), 4), constrained_layout=True)
    names = [e["arm"] for e in board]
    colors = [
        "black" if e["arm"] == "baseline" else ("tab:green" if e["verdict"] == "better" else "tab:gray") for e in board
    ]
    mean, std = np.array([e[metric] for e in board]), np.array([e[f"{metric}_std"] for e in board])
    ax.bar(names, mean, yerr=std, color=colors, capsize=3)
    base = next((e[metric] for e in board if e["arm"] == "baseline"), None)
    if base is not None:
        ax.axhline(base, color="black", linestyle="--", linewidth=1, label="baseline")
        ax.legend()
    if metric == "test_acc":  # a zoom on the accuracies' range, within [0, 1]
        ax.set_ylim(max(0.0, np.nanmin(mean - std) - 0.05), min(1.0, np.nanmax(mean + std) + 0.03))
    ax.set_ylabel(f"{label} (mean ± std)")
    ax.tick_params(axis="x", rotation=45)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)
