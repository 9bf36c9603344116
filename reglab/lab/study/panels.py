"""Figures made of panels of lines: the data of each panel is a plain structure (``Panel``) that
a study computes and a test can read; ``panels_png`` only draws it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reglab.lab.study.figures import _plt, _png


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    lines: dict[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)  # label -> (x, y)
    spread: dict[str, Sequence[float]] = field(default_factory=dict)  # label -> ± per point (error bars)
    log_x: bool = False
    log_y: bool = False
    markers: bool = False
    note: str = ""  # said in the panel when it has no lines


def panels_png(panels: Sequence[Panel], columns: int = 2, size: tuple[float, float] = (5.2, 3.8)) -> bytes:
    """The panels in a grid of ``columns``, a shared colour per label across panels."""
    plt = _plt()
    rows = -(-len(panels) // columns)
    cols = min(columns, len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False,
                             constrained_layout=True)  # fmt: skip
    labels = list(dict.fromkeys(label for p in panels for label in p.lines))
    cmap = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    colours = {label: cmap(i % cmap.N) for i, label in enumerate(labels)}
    for ax, panel in zip(axes.flat, panels):
        for label, (x, y) in panel.lines.items():
            err = panel.spread.get(label)
            style: dict[str, Any] = {"color": colours[label], "label": label, "marker": "o" if panel.markers else None,
                                     "markersize": 3}  # fmt: skip
            if err is not None:
                ax.errorbar(x, y, yerr=err, capsize=2, **style)
            else:
                ax.plot(x, y, **style)
        if not panel.lines and panel.note:
            ax.text(0.5, 0.5, panel.note, ha="center", va="center", transform=ax.transAxes, wrap=True)
        if panel.log_x:
            ax.set_xscale("log")
        if panel.log_y:
            ax.set_yscale("log")
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if panel.lines:
            ax.legend(fontsize=7, ncol=2 if len(panel.lines) > 6 else 1)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    return _png(fig)


def heatmap_png(
    grids: Sequence[tuple[str, np.ndarray]], rows: Sequence[str], columns: Sequence[str], label: str
) -> bytes:
    """One log-coloured heatmap per ``(title, values)``, ``values`` shaped (len(rows), len(columns));
    NaN cells blank. Each cell is annotated with its value."""
    from matplotlib.colors import LogNorm

    plt = _plt()
    finite = [v[np.isfinite(v) & (v > 0)] for _, v in grids]
    low = min((float(f.min()) for f in finite if len(f)), default=1e-3)
    high = max((float(f.max()) for f in finite if len(f)), default=1.0)
    fig, axes = plt.subplots(1, len(grids), figsize=(1.0 + 0.55 * len(columns) * len(grids), 1.2 + 0.42 * len(rows)),
                             squeeze=False, constrained_layout=True)  # fmt: skip
    image = None
    for ax, (title, values) in zip(axes[0], grids):
        shown = np.where(np.isfinite(values) & (values > 0), values, np.nan)
        image = ax.imshow(shown, norm=LogNorm(vmin=low, vmax=max(high, low * 1.01)), cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_title(title, fontsize=10)
        for i in range(len(rows)):
            for j in range(len(columns)):
                if np.isfinite(shown[i, j]):
                    ax.text(j, i, f"{shown[i, j]:.0e}", ha="center", va="center", fontsize=6, color="white")
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), label=label)
    return _png(fig)


def bars_png(groups: dict[str, dict[str, tuple[float, float]]], ylabel: str, title: str = "") -> bytes:
    """Grouped bars: ``groups[group][bar] = (mean, std)``, one colour per bar name."""
    plt = _plt()
    names = list(dict.fromkeys(b for bars in groups.values() for b in bars))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) * max(1, len(names)) / 2), 3.8), constrained_layout=True)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j, bars in enumerate(groups.values()) if name in bars]
        mean = [bars[name][0] for bars in groups.values() if name in bars]
        std = [bars[name][1] for bars in groups.values() if name in bars]
        ax.bar(xs, mean, width=width, yerr=std, capsize=2, label=name)
    ax.set_xticks(range(len(groups)), list(groups), rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    if len(names) > 1:
        ax.legend(fontsize=8)
    return _png(fig)
