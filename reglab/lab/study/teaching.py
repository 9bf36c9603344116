"""The teaching figures of the built-in studies: small problems solved at report time with
reglab's own optimizers and augmentations (seeded, so the same figure every time), to show
what a technique does where it can be seen whole (a curve, two weights, a 2-D data set).

They illustrate; the claims are measured on the studies' stored trials, never here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reglab.lab.study.figures import _plt, _png
from reglab.optim import SGD, Adam


def _mlp(inputs: int, outputs: int, width: int = 64, seed: int = 0, act: type = torch.nn.Tanh) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, width), act(), torch.nn.Linear(width, width), act(), torch.nn.Linear(width, outputs)
    )


def _fit(model: torch.nn.Module, loss_fn: Any, steps: int, lr: float, **options: Any) -> torch.nn.Module:
    opt = Adam(model.parameters(), lr=lr, **options)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model).backward()
        opt.step()
    return model


# -- penalties -------------------------------------------------------------------------------------
def curve_fit_png(points: int = 20, l2: float = 1e-2, steps: int = 1000) -> bytes:
    """An MLP fitted to ``points`` noisy samples of a sine, without and with coupled L2 (λ = ``l2``)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(points, 1, generator=g)
    y = torch.sin(2 * torch.pi * x) + 0.3 * torch.randn(points, 1, generator=g)
    fits = {}
    for name, decay in (("no penalty", 0.0), (f"L2, λ = {l2:g}", l2)):
        model = _fit(_mlp(1, 1), lambda m: F.mse_loss(m(x), y), steps, 1e-2, weight_decay=decay)
        fits[name] = model
    grid = torch.linspace(0, 1, 300)[:, None]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    ax.plot(grid, torch.sin(2 * torch.pi * grid), color="black", linestyle="--", label="true curve sin(2πx)")
    ax.scatter(x, y, color="black", zorder=3, label=f"{points} noisy training points")
    with torch.no_grad():
        for name, model in fits.items():
            ax.plot(grid, model(grid), linewidth=2, label=f"MLP fit, {name}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_ylim(-2, 2)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def penalized_paths(alphas: np.ndarray, steps: int = 150) -> dict[str, Any]:
    """A 2-weight least-squares problem ``½ mean((Xw − y)²)`` and its solutions under the L1
    penalty ``α‖w‖₁`` (reglab's proximal L1 on SGD) and the L2 penalty ``(α/2)‖w‖²`` (SGD's coupled
    decay) for each α, warm-started from the previous α."""
    g = np.random.default_rng(0)
    X = g.normal(size=(100, 2)) @ np.array([[1.0, 0.4], [0.0, 0.8]])
    w_true = np.array([1.5, 0.4])
    y = X @ w_true + 0.3 * g.normal(size=100)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    smooth = float(np.linalg.eigvalsh(X.T @ X / len(X)).max())  # L of the data term's gradient
    paths = {}
    for kind in ("l1", "l2"):
        w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        path = []
        for a in alphas:
            lr = 1.0 / (smooth + (float(a) if kind == "l2" else 0.0))  # 1/L of what the step differentiates
            opt = SGD([w], lr=lr, **({"l1_proximal": float(a)} if kind == "l1" else {"weight_decay": float(a)}))
            for _ in range(steps):
                opt.zero_grad()
                (0.5 * ((Xt @ w - yt) ** 2).mean()).backward()
                opt.step()
            path.append(w.detach().numpy().copy())
        paths[kind] = np.array(path)
    return {"X": X, "y": y, "paths": paths, "alphas": alphas}


def constraint_png() -> bytes:
    """Loss contours of a 2-weight regression, the L1 diamond and the L2 circle through the
    penalized solutions at one α, and both paths as α grows."""
    alphas = np.concatenate([[0.0], np.geomspace(0.01, 2.0, 16)])
    solved = penalized_paths(alphas)
    X, y, paths = solved["X"], solved["y"], solved["paths"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 6), constrained_layout=True)
    w1, w2 = np.meshgrid(np.linspace(-0.5, 2.0, 200), np.linspace(-0.5, 2.0, 200))
    W = np.stack([w1.ravel(), w2.ravel()], 1)
    loss = 0.5 * ((W @ X.T - y) ** 2).mean(1).reshape(w1.shape)
    ax.contour(w1, w2, loss, levels=np.geomspace(loss.min() + 1e-3, loss.max(), 14), colors="0.6", linewidths=0.8)
    pick = len(alphas) // 2
    r1 = np.abs(paths["l1"][pick]).sum()
    r2 = np.linalg.norm(paths["l2"][pick])
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(r2 * np.cos(t), r2 * np.sin(t), color="tab:blue", alpha=0.5, label=f"L2 ball ‖w‖₂ = {r2:.2f}")
    ax.plot([r1, 0, -r1, 0, r1], [0, r1, 0, -r1, 0], color="tab:red", alpha=0.5, label=f"L1 ball ‖w‖₁ = {r1:.2f}")
    ax.plot(*paths["l2"].T, "o-", color="tab:blue", markersize=3, label="L2 solution as α grows")
    ax.plot(*paths["l1"].T, "o-", color="tab:red", markersize=3, label="L1 solution as α grows")
    zero = next((i for i, w in enumerate(paths["l1"]) if w[1] == 0.0), None)
    if zero is not None:
        ax.annotate(f"w₂ = 0 exactly from α = {alphas[zero]:.2g}", paths["l1"][zero], textcoords="offset points",
                    xytext=(-60, -45), arrowprops={"arrowstyle": "->"}, fontsize=9)  # fmt: skip
    ax.scatter(*paths["l1"][0], color="black", zorder=3, label="least squares (α = 0)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("weight w₁")
    ax.set_ylabel("weight w₂")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


# -- augmentation ----------------------------------------------------------------------------------
def _samples(name: str, path: str, n: int = 8) -> torch.Tensor:
    from reglab.data import load_data
    from reglab.data.sets import Source

    return load_data(Source(name=name, path=path), seed=0).x_train[:n]


def transformed(x: torch.Tensor, changes: dict[str, Any], seed: int = 0) -> torch.Tensor | None:
    """``x`` as a recipe's changes would transform it in a training batch (the augment section,
    input noise, Mixup or CutMix with partners from the same batch); None when the changes do
    not touch the inputs (label smoothing, weight noise)."""
    from reglab.augment import Augment, cutmix, mixup
    from reglab.lab.recipe import Recipe

    recipe = Recipe().updated({k: v for k, v in changes.items() if not k.startswith(("data.", "model."))})
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(len(x), dtype=torch.long)
    if recipe.mixing.mixup_alpha:
        return mixup(x, y, g, alpha=recipe.mixing.mixup_alpha, num_classes=10)[0]
    if recipe.mixing.cutmix_alpha:
        return cutmix(x, y, g, alpha=recipe.mixing.cutmix_alpha, num_classes=10)[0]
    if recipe.regularization.input_noise:
        return x + recipe.regularization.input_noise * torch.randn(x.shape, generator=g)
    if any(k.startswith("augment.") for k in changes):
        return Augment(recipe.augment, tuple(x.shape[1:]))(x, y, g)[0]
    return None


def gallery_png(data: Any, image_arms: dict[str, Any], signal_arms: dict[str, Any]) -> bytes:
    """The same 8 samples under each transform of ``image_arms`` (on the images of the study's
    image set: ``data`` is its data section) and ``signal_arms`` (on MNIST-1D signals); arms are
    ``ArmSpec``s, their baselines (no changes to the inputs) left out."""
    images = _samples(data.name, data.path) if data.name != "mnist1d" else _samples("digits", "")
    signals = _samples("mnist1d", "")
    rows: list[tuple[str, torch.Tensor, bool]] = [("original images", images, True)]
    for arm, spec in image_arms.items():
        if arm != "baseline" and (t := transformed(images, spec.changes)) is not None:
            rows.append((arm, t, True))
    rows.append(("original signals", signals, False))
    for arm, spec in signal_arms.items():
        if spec.versus != arm and (t := transformed(signals, spec.changes)) is not None:
            rows.append((arm, t, False))
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 8, figsize=(8 * 1.1, len(rows) * 1.05), squeeze=False)
    for (name, batch, image), line in zip(rows, axes):
        for i, ax in enumerate(line):
            sample = batch[i].detach().numpy()
            if image:
                ax.imshow(sample[0], cmap="gray_r", vmin=0, vmax=1)
            else:
                ax.plot(sample[0], linewidth=0.9)
                ax.set_ylim(-4, 4)
            ax.set_xticks([])
            ax.set_yticks([])
        line[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(left=0.16, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.08)
    return _png(fig)


def moons_png(points: int = 300, steps: int = 400) -> bytes:
    """Decision boundary and confidence of a small MLP on noisy two moons, trained with reglab's
    Adam: plain, with Mixup (α = 0.4) and with label smoothing (ε = 0.1)."""
    from sklearn.datasets import make_moons

    from reglab.augment import mixup, smooth_labels, soft_cross_entropy

    xs, ys = make_moons(points, noise=0.3, random_state=0)
    x, y = torch.tensor(xs, dtype=torch.float32), torch.tensor(ys)
    g = torch.Generator().manual_seed(0)

    def plain(m):
        return F.cross_entropy(m(x), y)

    def mixed(m):
        xm, ym = mixup(x, y, g, alpha=0.4, num_classes=2)
        return soft_cross_entropy(m(xm), ym)

    def smoothed(m):
        return soft_cross_entropy(m(x), smooth_labels(y, 2, 0.1))

    losses = (("baseline", plain), ("Mixup α = 0.4", mixed), ("label smoothing ε = 0.1", smoothed))
    models = {name: _fit(_mlp(2, 2, act=torch.nn.ReLU), fn, steps, 1e-2) for name, fn in losses}
    u, v = np.meshgrid(np.linspace(-2, 3, 200), np.linspace(-1.6, 2.1, 200))
    grid = torch.tensor(np.stack([u.ravel(), v.ravel()], 1), dtype=torch.float32)
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    for ax, (name, model) in zip(axes, models.items()):
        with torch.no_grad():
            p = torch.softmax(model(grid), 1)[:, 1].reshape(u.shape).numpy()
            conf = torch.softmax(model(x), 1).max(1).values.mean().item()
        image = ax.contourf(u, v, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8)
        ax.contour(u, v, p, levels=[0.5], colors="black", linewidths=1.5)
        ax.scatter(*xs[ys == 0].T, s=8, color="tab:blue", edgecolor="white", linewidth=0.3)
        ax.scatter(*xs[ys == 1].T, s=8, color="tab:orange", edgecolor="white", linewidth=0.3)
        ax.set_title(f"{name}: mean confidence {conf:.2f}", fontsize=10)
        ax.set_xlabel("x₁")
    axes[0].set_ylabel("x₂")
    fig.colorbar(image, ax=axes, label="predicted probability of the orange class")
    return _png(fig)


# -- robust loss -----------------------------------------------------------------------------------
def robust_line_png(points: int = 60, fraction: float = 0.2, steps: int = 800) -> bytes:
    """A line fitted with reglab's Adam under MSE, MAE and Huber to 1-D data whose targets have
    ``fraction`` outliers moved up."""
    g = torch.Generator().manual_seed(0)
    x = 2 * torch.rand(points, 1, generator=g) - 1
    y = 2 * x + 0.5 + 0.2 * torch.randn(points, 1, generator=g)
    bad = torch.randperm(points, generator=g)[: round(fraction * points)]
    y[bad] += 4.0
    losses = {"MSE": F.mse_loss, "MAE": F.l1_loss, "Huber (δ = 1)": F.huber_loss}
    lines = {}
    for name, fn in losses.items():
        torch.manual_seed(0)
        model = torch.nn.Linear(1, 1)
        lines[name] = _fit(model, lambda m, fn=fn: fn(m(x), y), steps, 0.05)
    mask = torch.zeros(points, dtype=torch.bool)
    mask[bad] = True
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    ax.scatter(x[~mask], y[~mask], s=14, color="black", label="clean points")
    ax.scatter(
        x[mask], y[mask], s=30, marker="x", color="tab:orange", label=f"outliers ({fraction:.0%}, moved up by 4)"
    )
    grid = torch.linspace(-1, 1, 50)[:, None]
    ax.plot(grid, 2 * grid + 0.5, color="black", linestyle="--", label="true line y = 2x + 0.5")
    with torch.no_grad():
        for name, model in lines.items():
            w, b = model.weight.item(), model.bias.item()
            ax.plot(grid, model(grid), linewidth=2, label=f"{name} fit: y = {w:.2f}x + {b:.2f}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)
