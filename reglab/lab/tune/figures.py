"""The search report's figures (matplotlib, Agg), as PNG bytes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reglab.lab.study.figures import _plt, _png, log_ticks
from reglab.lab.tune.space import Space, use_key


def history_png(study: Any) -> bytes:
    """Validation loss per trial in start order (pruned ones at their last report) and the best so far."""
    from optuna.trial import TrialState

    plt = _plt()
    trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                    key=lambda t: t.number)  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 3.8), constrained_layout=True)
    done = [(t.number, t.value) for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    cut = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in trials
           if t.state == TrialState.PRUNED and t.intermediate_values]  # fmt: skip
    if done:
        ax.scatter(*zip(*done), color="tab:blue", label="complete", zorder=3)
        numbers, values = zip(*done)
        ax.plot(numbers, np.minimum.accumulate(values), color="black", drawstyle="steps-post", label="best so far")
    if cut:
        ax.scatter(*zip(*cut), marker="x", color="tab:gray", label="pruned (last reported)")
    finite = [v for _, v in done + cut if math.isfinite(v)]
    if finite and max(finite) / max(min(finite), 1e-12) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("trial number")
    ax.set_ylabel("validation loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def importance_png(shares: dict[str, float]) -> bytes:
    plt = _plt()
    names = list(shares)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2), constrained_layout=True)
    ax.barh(names, [shares[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (share of the validation loss's variance)")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def slices_png(study: Any, space: Space) -> bytes:
    """One panel per numeric range: validation loss against the value of each complete trial,
    grey where the range's technique was switched off."""
    from optuna.trial import TrialState

    plt = _plt()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    owner = {d.key: t.name for t in space.techniques for d in t.dims}
    dims = [d for d in space.dims if d.choices is None]
    cols = min(4, len(dims))
    rows = math.ceil(len(dims) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, sharey=True,
                             constrained_layout=True)  # fmt: skip
    for ax, d in zip(axes.flat, dims):
        for on in (False, True):
            pts = [
                (t.params[d.key], t.value)
                for t in complete
                if d.key in t.params
                and t.value is not None
                and math.isfinite(t.value)
                and (d.key not in owner or t.params.get(use_key(owner[d.key]))) == on
            ]
            if pts:
                ax.scatter(*zip(*pts), s=14, color="tab:blue" if on else "0.75",
                           label="on" if on else "switched off")  # fmt: skip
        if d.log:
            ax.set_xscale("log")
            ax.set_xlim(d.low / 1.15, d.high * 1.15)
            log_ticks(ax.xaxis)
        ax.set_xlabel(d.key, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(dims) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("validation loss")
    axes.flat[0].legend(fontsize=7)
    return _png(fig)
