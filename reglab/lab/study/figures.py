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


def _margins(fig, left: float, right: float, bottom: float, top: float, wspace: float, hspace: float = 0.0) -> None:
    """A regular grid of panels laid out with margins and gaps given in inches. For grids whose
    labels have a known size (one-line titles, short tick labels) this is what constrained
    layout finds, without measuring every tick label first (half of such a figure's time)."""
    width, height = fig.get_size_inches()
    rows, cols = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
    panel_w = (width - left - right - wspace * (cols - 1)) / cols
    panel_h = (height - bottom - top - hspace * (rows - 1)) / rows
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace / panel_w, hspace=hspace / panel_h)  # fmt: skip


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


def diverged_at(histories: Sequence[Sequence[dict[str, Any]]]) -> int | None:
    """The first epoch at which any seed's training or validation loss was not finite."""
    bad = [
        r["epoch"]
        for h in histories
        for r in h
        if not all(isinstance(r.get(k), (int, float)) and math.isfinite(r[k]) for k in ("train_loss", "valid_loss"))
    ]
    return min(bad) if bad else None


def _say(ax: Any, text: str) -> None:
    """A note in the middle of a panel whose curves cannot be drawn on the shared axis."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="tab:red", fontsize=10)


def learning_curves(
    curves: dict[str, list],
    order: Sequence[str],
    loss: str = "cross-entropy loss",
    best: dict[str, float] | None = None,
) -> bytes:
    """Small multiples: mean train vs validation loss per arm; the dashed line and the title give
    ``best[arm]``, the mean of the seeds' best epochs (the leaderboard's "best epoch"), else the
    best epoch of the mean curve. A panel whose curves are not finite says where they diverged."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    n = len(order)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, max(2.7 * rows, 3.3)), sharey=True, squeeze=False)
    _margins(fig, left=0.8, right=0.15, bottom=0.65, top=0.3, wspace=0.15, hspace=0.5)  # shared y, one-line titles
    top = _common_top([mean_curve(curves[a], "valid_loss") for a in order])
    for ax, arm in zip(axes.flat, order):
        train, valid = mean_curve(curves[arm], "train_loss"), mean_curve(curves[arm], "valid_loss")
        epochs = np.arange(1, len(valid) + 1)
        ax.plot(epochs, train, label="train")
        ax.plot(epochs, valid, label="validation")
        mark = (best or {}).get(arm)
        if mark is None or not math.isfinite(mark):
            mark = float(np.nanargmin(valid) + 1) if np.isfinite(valid).any() else None
        if mark is not None:
            ax.axvline(mark, color="gray", linestyle="--", linewidth=1)
            ax.set_title(f"{arm}: best epoch {mark:.3g}", fontsize=10)
        else:
            ax.set_title(f"{arm}: diverged", fontsize=10)
        broke = diverged_at(curves[arm])
        seen = valid[np.isfinite(valid)]
        if broke is not None and not np.isfinite(valid).all():
            _say(ax, f"diverged at epoch {broke}")
        elif top is not None and seen.size and float(seen.min()) > top:
            _say(ax, f"off the scale: validation loss\n{float(seen.min()):.3g} to {float(seen.max()):.3g}")
        if top is not None:
            ax.set_ylim(0, top)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(loss)
    axes.flat[0].legend(fontsize=8)
    fig.supxlabel("epoch", y=0.05 / fig.get_figheight(), va="bottom")  # below the tick labels, in inches
    return _png(fig)


def validation_overlay(curves: dict[str, list], order: Sequence[str]) -> bytes:
    """Every arm's mean validation loss on one log axis; an arm whose loss exploded far above
    the others (``_common_top``) runs off the top, marked "off scale" in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5), constrained_layout=True)
    cmap = plt.get_cmap("tab20")
    means = {arm: mean_curve(curves[arm], "valid_loss") for arm in order}
    top = _common_top(list(means.values()))
    for i, arm in enumerate(order):
        valid = means[arm]
        style = {"color": "black", "linewidth": 2.5} if arm == "baseline" else {"color": cmap(i % 20), "linewidth": 1.3}
        seen = valid[np.isfinite(valid)]
        off = top is not None and seen.size and float(seen.max()) > top
        ax.plot(np.arange(1, len(valid) + 1), valid, label=f"{arm} (off scale)" if off else arm, **style)
    finite = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in means.values()] or [np.array([])])
    if top is not None and finite.size:
        ax.set_ylim(float(finite.min()) * 0.95, top)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (mean over seeds)")
    ax.set_yscale("log")
    log_ticks(ax.yaxis)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)


def log_ticks(axis: Any) -> None:
    """Plain-number labels on a log axis, each distinct: over less than a decade, about six
    evenly spaced ticks (``1.2, 1.4, 1.6``; a log axis has too few of its own there), over more,
    the powers of ten; as few significant digits as keep neighbouring labels apart."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, NullLocator

    low, high = sorted(axis.get_view_interval())
    if not (low > 0 and math.isfinite(high)):
        return
    if high / low < 10:
        axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        axis.set_minor_locator(NullLocator())
    shown = sorted(t for t in axis.get_majorticklocs() if low <= t <= high)
    digits = next((d for d in range(1, 6) if len({f"{t:.{d}g}" for t in shown}) == len(shown)), 6)
    axis.set_major_formatter(FuncFormatter(lambda t, _: f"{t:.{digits}g}"))
    axis.set_minor_formatter(NullFormatter())


def weight_histograms(weights: dict[str, dict[str, Any]], all_zero: dict[str, float] | None = None) -> bytes:
    """First-layer weight histograms (one seed per arm), log counts so exact zeros show; each
    title gives the first layer's fraction of exactly-zero weights and, from ``all_zero``, the
    fraction over all layers (the leaderboard's "zero weights")."""
    plt = _plt()
    n = len(weights)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), squeeze=False)
    _margins(fig, left=0.7, right=0.15, bottom=0.5, top=0.55, wspace=0.65)  # two-line titles, log counts
    for ax, (arm, h) in zip(axes.flat, weights.items()):
        ax.stairs(np.maximum(h["counts"], 0.5), h["edges"], fill=True, alpha=0.7)
        total = sum(h["counts"])
        every = (all_zero or {}).get(arm)
        extra = "" if every is None else f"\n(all layers: {every:.1%})"
        ax.set_title(f"{arm}: first layer {h['zeros'] / max(total, 1):.1%} exactly zero{extra}", fontsize=10)
        ax.set_yscale("log")
        ax.set_xlabel("first-layer weight")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("count")
    return _png(fig)


COLORS = {"better": "tab:green", "worse": "tab:red", "inconclusive": "tab:gray", "diverged": "tab:red"}


def metric_bars(
    board: Sequence[dict[str, Any]],
    metric: str = "test_acc",
    label: str = "test accuracy",
    verdicts: dict[str, str] | None = None,
) -> bytes:
    """``metric`` per arm (``test_acc``, or ``test_loss`` for a regression study), mean ± std
    over seeds, baseline as a line. Each bar is coloured by ``verdicts[arm]``, the study's rule
    applied to this metric (better green, worse red, inconclusive grey), so that a colour never
    says something the bar's own numbers contradict."""
    from matplotlib.patches import Patch

    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.65 * len(board)), 4), constrained_layout=True)
    names = [e["arm"] for e in board]
    said = verdicts or {}
    colors = ["black" if e["arm"] == "baseline" else COLORS.get(said.get(e["arm"], ""), "tab:gray") for e in board]
    mean, std = np.array([e[metric] for e in board]), np.array([e[f"{metric}_std"] for e in board])
    ax.bar(names, mean, yerr=std, color=colors, capsize=3)
    handles = [Patch(color=COLORS[v], label=f"{v} than the baseline" if v != "inconclusive" else v)
               for v in ("better", "worse", "inconclusive") if v in said.values()]  # fmt: skip
    base = next((e[metric] for e in board if e["arm"] == "baseline"), None)
    if base is not None:
        handles.append(ax.axhline(base, color="black", linestyle="--", linewidth=1, label="baseline"))
    if handles:
        ax.legend(handles=handles, fontsize=8)
    if metric == "test_acc":  # a zoom on the accuracies' range, within [0, 1]
        ax.set_ylim(max(0.0, np.nanmin(mean - std) - 0.05), min(1.0, np.nanmax(mean + std) + 0.03))
    ax.set_ylabel(f"{label} (mean ± std)")
    ax.tick_params(axis="x", rotation=45)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


# -- the built-in studies' figures -----------------------------------------------------------------
def _x_of(row: dict[str, Any], x: str) -> float:
    """A sweep figure's x: a trial's metric (``params``, ``train_samples``) or ``recipe:KEY``."""
    if x.startswith("recipe:"):
        value: Any = row["recipe"]
        for part in x[len("recipe:") :].split("."):
            value = value[part]
        return float(value)
    from reglab.lab.study.claims import metric

    return metric(row, x)


def sweep_curves(
    groups: dict[str, list[dict[str, Any]]], series: dict[str, Sequence[str]], x: str, x_label: str, log_x: bool = False
) -> bytes:
    """Three panels against ``x`` (one point per arm, mean ± std over seeds, one line per
    series of arms): the best validation loss, the final validation loss and the final
    generalization gap (validation − training loss at the last epoch)."""
    from reglab.lab.study.claims import metric

    plt = _plt()
    panels = [("best_valid_loss", "best validation loss"), ("final_valid_loss", "final validation loss"),
              ("gap", "final gap (validation − training)")]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    seen: set[float] = set()
    for ax, (key, label) in zip(axes, panels):
        for name, arms in series.items():
            pts = []
            for arm in arms:
                rs = groups.get(arm, [])
                if not rs:
                    continue
                ys = np.array([metric(r, key) for r in rs], float)
                pts.append((float(np.mean([_x_of(r, x) for r in rs])), np.nanmean(ys), np.nanstd(ys)))
            if pts:
                pts.sort()
                xs, ys, sd = (np.array(v) for v in zip(*pts))
                seen.update(xs.tolist())
                ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, label=name)
        if log_x:
            ax.set_xscale("log")
        if 0 < len(seen) <= 10 and x != "params":  # a few swept values: label them as they are
            from matplotlib.ticker import NullLocator

            ax.set_xticks(sorted(seen), [f"{v:g}" for v in sorted(seen)])
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(x_label)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _png(fig)


def pick_diagnosed(rows: Sequence[dict[str, Any]], verdicts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One trial per diagnosis verdict: the underfit one with the fewest parameters, the good fit
    with the lowest best validation loss, the overfit one with the largest final gap."""
    from reglab.lab.study.claims import metric

    out = {}
    for v in verdicts:
        found = [r for r in rows if r["diagnosis"]["verdict"] == v]
        if not found:
            continue
        if v == "underfitting":
            out[v] = min(found, key=lambda r: (metric(r, "params"), r["seed"]))
        elif v == "overfitting":
            out[v] = max(found, key=lambda r: (metric(r, "gap"), -r["seed"]))
        else:
            out[v] = min(found, key=lambda r: (metric(r, "best_valid_loss"), r["seed"]))
    return out


def diagnosed_panels(picked: dict[str, dict[str, Any]]) -> bytes:
    """Training and validation loss per epoch of each picked trial, titled by its verdict."""
    plt = _plt()
    n = len(picked)
    fig, axes = plt.subplots(1, n, figsize=(4.3 * n, 3.3), squeeze=False, constrained_layout=True)
    for ax, (verdict, r) in zip(axes.flat, picked.items()):
        h = r["history"]
        epochs = [e["epoch"] for e in h]
        ax.plot(epochs, [e["train_loss"] for e in h], label="train")
        ax.plot(epochs, [e["valid_loss"] for e in h], label="validation")
        ax.set_title(f"{verdict}: {r['arm']} seed {r['seed']}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("loss")
    axes.flat[0].legend(fontsize=8)
    return _png(fig)


def column_norms(columns: dict[str, list[list[float]]], noise: int) -> bytes:
    """The first layer's weight norm on each input (mean over seeds), one line per arm; the last
    ``noise`` inputs (pure noise) shaded."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.6), constrained_layout=True)
    width = 0
    for arm, per_seed in columns.items():
        per_seed = [c for c in per_seed if c]
        if not per_seed:
            continue
        mean = np.mean(np.asarray(per_seed, float), axis=0)
        width = len(mean)
        ax.plot(np.arange(1, width + 1), mean, marker=".", label=arm)
    if width and noise:
        ax.axvspan(width - noise + 0.5, width + 0.5, color="0.85", label="noise inputs")
    ax.set_xlabel("input (signal samples, then the appended noise)")
    ax.set_ylabel("‖W[:, j]‖₂, first layer")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def outlier_curves(groups: dict[str, list[dict[str, Any]]], series: dict[str, Sequence[str]]) -> bytes:
    """Test RMSE on clean targets against the fraction of outliers in the training targets,
    one line per training loss (mean ± std over seeds)."""
    from reglab.lab.study.claims import metric

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for loss, arms in series.items():
        pts = []
        for arm in arms:
            rs = groups.get(arm, [])
            if rs:
                ys = np.array([metric(r, "test_rmse") for r in rs], float)
                pts.append((float(rs[0]["recipe"]["data"]["outliers"]), np.nanmean(ys), np.nanstd(ys)))
        if pts:
            xs, ys, sd = (np.array(v) for v in zip(*sorted(pts)))
            ax.errorbar(100 * xs, ys, yerr=sd, marker="o", capsize=3, label=f"trained with {loss}")
    ax.set_xlabel("outliers in the training targets (%)")
    ax.set_ylabel("test RMSE on clean targets (target std units)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)
