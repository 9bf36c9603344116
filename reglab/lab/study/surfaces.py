"""Optimizers on 2-D test functions: the optimizers study's trajectories (TECHNIQUES.md section 3).

Each trajectory is run by reglab's own optimizers on a float64 point ``w = (x, y)`` with the
function's exact gradient (autograd), the same start for every optimizer; each optimizer at its
best step size for that function: the η of ``STEP_GRID`` (times its own scale) with the lowest
final value after ``STEPS`` steps.

- ravine: ``f = ½ (x² / 10 + 10 y²)``, an ill-conditioned quadratic (condition number 100):
  steep across the valley, shallow along it; the minimum is 0 at (0, 0);
- Rosenbrock: ``f = (1 − x)² + 100 (y − x²)²``, a curved valley, minimum at (1, 1);
- Beale: ``f = (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²``, minimum at (3, 0.5).

``overshoot`` is how far a trajectory goes past the ravine's minimum along the valley (the x
axis): ``max_t (−sign(x_0) x_t)``, 0 if it never crosses. Heavy-ball momentum carries its
velocity past the minimum; Nesterov's look-ahead gradient brakes earlier.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import reglab.optim as ro

STEPS = 200
STEP_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # multiplied by each optimizer's scale


@dataclass(frozen=True)
class Surface:
    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float]
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 of the contour plot


def _ravine(w):
    return 0.5 * (w[0] ** 2 / 10 + 10 * w[1] ** 2)


def _rosenbrock(w):
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def _beale(w):
    x, y = w[0], w[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


SURFACES = {
    "ravine": Surface("ravine", _ravine, (-9.0, 1.0), (0.0, 0.0), (-10.0, 6.0, -1.5, 1.5)),
    "rosenbrock": Surface("rosenbrock", _rosenbrock, (-1.5, 2.0), (1.0, 1.0), (-2.0, 2.0, -1.0, 3.0)),
    "beale": Surface("beale", _beale, (1.0, 1.5), (3.0, 0.5), (-1.0, 4.0, -1.5, 2.0)),
}

# name -> (what it is, optimizer factory (params, lr) -> optimizer, the scale of its step grid)
OPTIMIZERS: dict[str, tuple[str, Callable[[Any, float], torch.optim.Optimizer], float]] = {
    "gd": ("gradient descent", lambda p, lr: ro.SGD(p, lr=lr), 0.1),
    "momentum": ("heavy-ball momentum β = 0.9", lambda p, lr: ro.SGD(p, lr=lr, momentum=0.9), 0.1),
    "nesterov": ("Nesterov β = 0.9", lambda p, lr: ro.SGD(p, lr=lr, momentum=0.9, nesterov=True), 0.1),
    "adagrad": ("Adagrad", lambda p, lr: ro.Adagrad(p, lr=lr), 1.0),
    "adadelta": ("Adadelta", lambda p, lr: ro.Adadelta(p, lr=lr), 10.0),
    "rmsprop": ("RMSprop", lambda p, lr: ro.RMSprop(p, lr=lr), 0.1),
    "adam": ("Adam", lambda p, lr: ro.Adam(p, lr=lr), 1.0),
    "adamw": ("AdamW (λ = 1e-2)", lambda p, lr: ro.AdamW(p, lr=lr), 1.0),
}


def trajectory(surface: Surface, optimizer: str, lr: float, steps: int = STEPS) -> np.ndarray:
    """The points ``w_0 ... w_steps`` (shape (steps + 1, 2)) of ``optimizer`` at ``lr``; a
    trajectory that leaves the finite numbers stops there (the rest of its rows NaN)."""
    w = torch.tensor(surface.start, dtype=torch.float64, requires_grad=True)
    opt = OPTIMIZERS[optimizer][1]([w], lr)
    out = np.full((steps + 1, 2), np.nan)
    out[0] = surface.start
    for t in range(1, steps + 1):
        opt.zero_grad()
        surface.f(w).backward()
        opt.step()
        point = w.detach().numpy()
        if not np.isfinite(point).all() or np.abs(point).max() > 1e6:
            break
        out[t] = point
    return out


def value(surface: Surface, point: np.ndarray) -> float:
    if not np.isfinite(point).all():
        return math.inf
    return float(surface.f(torch.tensor(point, dtype=torch.float64)))


def best_run(surface: Surface, optimizer: str, steps: int | None = None) -> dict[str, Any]:
    """The optimizer at each step size of its grid; the one with the lowest final value (computed
    once per surface, optimizer and steps: the figure and the claim share it)."""
    return _best(surface.name, optimizer, steps or STEPS)


@functools.cache
def _best(name: str, optimizer: str, steps: int) -> dict[str, Any]:
    surface = SURFACES[name]
    scale = OPTIMIZERS[optimizer][2]
    tried = []
    for factor in STEP_GRID:
        path = trajectory(surface, optimizer, round(factor * scale, 12), steps)
        last = path[~np.isnan(path).any(1)][-1]
        final = value(surface, last) if np.isfinite(path[-1]).all() else math.inf
        tried.append((final, round(factor * scale, 12), path))
    final, lr, path = min(tried, key=lambda t: (t[0], t[1]))
    return {"lr": lr, "final": final, "path": path, "grid": [(lr_, f) for f, lr_, _ in tried]}


def overshoot(path: np.ndarray, surface: Surface = SURFACES["ravine"]) -> float:
    """How far ``path`` goes past the minimum along x, away from where it started (≥ 0)."""
    side = -math.copysign(1.0, surface.start[0] - surface.minimum[0])
    x = path[~np.isnan(path).any(1), 0] - surface.minimum[0]
    return float(max(0.0, (side * x).max()))


def momentum_overshoots(steps: int | None = None) -> dict[str, Any]:
    """Heavy-ball and Nesterov on the ravine at the same β = 0.9 and the same η (heavy-ball's
    best): the overshoot of each (the optimizers study's claim)."""
    ravine = SURFACES["ravine"]
    lr = best_run(ravine, "momentum", steps)["lr"]
    paths = {name: trajectory(ravine, name, lr, steps or STEPS) for name in ("momentum", "nesterov")}
    return {"lr": lr, **{name: overshoot(p) for name, p in paths.items()}}


def trajectories_png(steps: int | None = None) -> tuple[bytes, dict[str, dict[str, float]]]:
    """The three surfaces' contour plots with every optimizer's best trajectory; also returns
    surface -> optimizer -> the best η (what the legend says)."""
    from reglab.lab.study.figures import _plt, _png

    plt = _plt()
    fig, axes = plt.subplots(1, len(SURFACES), figsize=(5.6 * len(SURFACES), 5.6), constrained_layout=True)
    chosen: dict[str, dict[str, float]] = {}
    cmap = plt.get_cmap("tab10")
    for ax, surface in zip(axes, SURFACES.values()):
        x0, x1, y0, y1 = surface.box
        gx, gy = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
        grid = torch.tensor(np.stack([gx, gy]), dtype=torch.float64)
        z = surface.f(grid).numpy()
        ax.contour(gx, gy, np.log10(z - z.min() + 1e-3), levels=20, cmap="Greys", linewidths=0.6)
        chosen[surface.name] = {}
        for i, name in enumerate(OPTIMIZERS):
            run = best_run(surface, name, steps)
            chosen[surface.name][name] = run["lr"]
            path = run["path"]
            ax.plot(path[:, 0], path[:, 1], color=cmap(i), linewidth=1.2, label=f"{name} (η={run['lr']:g})")
        ax.plot(*surface.start, "ko", markersize=5)
        ax.plot(*surface.minimum, "r*", markersize=11)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(f"{surface.name}: {steps or STEPS} steps from the black dot; minimum ★", fontsize=10)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    return _png(fig), chosen
