"""Model builders: ``mlp`` and ``cnn`` from ``torch.nn`` layers and ``torch.nn.init``.

A hidden block is ``layer -> norm -> activation -> dropout`` (plus 2x max-pooling for cnn).
The layers are PyTorch's own; tests/test_models.py checks them against TECHNIQUES.md 8-10:

- Dropout (p): in ``train()`` mode each unit is zeroed with probability p and survivors are
  scaled by 1/(1-p); in ``eval()`` mode nothing is dropped.
- Batch norm: ``x̂ = (x - μ_B)/√(σ²_B + ε)``, ``y = γ x̂ + β``, ε = 1e-5, with running averages
  of μ and σ² used at evaluation. Layer norm normalizes each sample across its features (for a
  cnn: ``GroupNorm(1, C)``, across channels and positions, with per-channel γ, β); group norm
  across groups of channels; instance norm per sample and channel (cnn only).
- Init: Xavier/Glorot uniform ``U(±√(6/(n_in+n_out)))`` / normal ``σ = √(2/(n_in+n_out))``
  (for tanh/sigmoid); He/Kaiming uniform ``U(±√(6/n_in))`` / normal ``σ = √(2/n_in)`` (for
  ReLU; also used for leaky ReLU, whose gain differs by a factor 1/√(1+0.01²)). ``auto`` picks
  He uniform for the ReLU family and Xavier uniform otherwise. Biases start at 0. The builders
  take ``init=`` (default ``None``: PyTorch's own layer initialization, left as it is); a
  recipe's ``model.init`` defaults to ``auto``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from reglab._checks import check_choice, check_float, check_int
from reglab.recipe import NORMS

if TYPE_CHECKING:
    from reglab.recipe import ModelConfig

DEFAULT_WIDTH = {"mlp": 256, "cnn": 32}  # used when model.width = 0

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}

INITS = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "he_uniform": lambda w: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"),
    "he_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
}


def build_model(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the model a recipe describes for inputs of ``input_shape`` (one sample)."""
    width = config.resolved_width
    if config.kind == "mlp":
        return mlp(
            math.prod(input_shape),
            num_classes,
            width,
            config.depth,
            config.activation,
            config.norm,
            config.dropout,
            config.groups,
            config.init,
        )
    return cnn(
        input_shape,
        num_classes,
        width,
        config.depth,
        config.activation,
        config.norm,
        config.dropout,
        config.groups,
        config.init,
    )


def mlp(
    n_in: int,
    n_out: int,
    width: int = 256,
    depth: int = 2,
    activation: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    groups: int = 8,
    init: str | None = None,
) -> nn.Sequential:
    """Flatten, then ``depth`` blocks ``Linear -> norm -> activation -> dropout``, then Linear;
    weights initialized by ``init`` (see the module's docstring; ``None``: PyTorch's default).

    >>> model = mlp(40, 10, width=256, depth=2, norm="layer", dropout=0.2, init="auto")
    """
    check_int("n_in", n_in, low=1)
    _check_blocks(n_out, width, depth, activation, norm, dropout, groups, init)
    if norm == "instance":
        raise ValueError("instance norm needs spatial dimensions; use a cnn, or layer norm for an mlp")
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers.append(nn.Linear(n_in if i == 0 else width, width))
        layers += _norm(norm, width, groups, dims=1, spatial=False)
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(n_in if depth == 0 else width, n_out))
    return _initialized(nn.Sequential(*layers), init, activation)


def cnn(
    input_shape: tuple[int, ...],
    n_out: int,
    width: int = 32,
    depth: int = 2,
    activation: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    groups: int = 8,
    init: str | None = None,
) -> nn.Sequential:
    """``depth`` blocks ``Conv(3) -> norm -> activation -> max-pool(2) -> dropout``, global
    average pooling, then Linear. 1-D convolutions for ``(C, L)`` or ``(L,)`` inputs, 2-D for
    ``(C, H, W)`` (the shape of one sample); weights initialized by ``init`` as for ``mlp``.

    >>> model = cnn((1, 28, 28), 10, width=32, depth=2, norm="batch", init="he_normal")
    """
    _check_blocks(n_out, width, depth, activation, norm, dropout, groups, init)
    input_shape = _sample_shape(input_shape)
    layers: list[nn.Module] = []
    if len(input_shape) == 1:  # a flat signal: one channel
        layers.append(nn.Unflatten(1, (1, input_shape[0])))
        input_shape = (1, *input_shape)
    dims = len(input_shape) - 1
    if dims not in (1, 2):
        raise ValueError(f"cnn needs inputs of shape (C, L) or (C, H, W), got {input_shape}")
    conv, pool = (nn.Conv1d, nn.MaxPool1d) if dims == 1 else (nn.Conv2d, nn.MaxPool2d)
    channels, size = input_shape[0], min(input_shape[1:])
    for _ in range(depth):
        layers.append(conv(channels, width, kernel_size=3, padding=1))
        layers += _norm(norm, width, groups, dims=dims, spatial=True)
        layers.append(ACTIVATIONS[activation]())
        if size >= 2:
            layers.append(pool(2))
            size //= 2
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        channels = width
    pool_all = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
    layers += [pool_all, nn.Flatten(), nn.Linear(channels, n_out)]
    return _initialized(nn.Sequential(*layers), init, activation)


def _sample_shape(shape: object) -> tuple[int, ...]:
    """``cnn``'s ``input_shape``: a tuple of positive integers (one sample's shape, no batch axis)."""
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise TypeError(
            f"input_shape must be the shape of one sample, such as (1, 40) or (1, 28, 28), got {shape!r} ({type(shape).__name__})"
        )
    for i, n in enumerate(shape):
        check_int(f"input_shape[{i}]", n, low=1)
    return tuple(shape)


def _initialized(model: nn.Sequential, init: str | None, activation: str) -> nn.Sequential:
    if init is not None:
        if init == "auto":
            init = "he_uniform" if activation in ("relu", "leaky_relu") else "xavier_uniform"
        initialize(model, init)
    return model


def _check_blocks(n_out, width, depth, activation, norm, dropout, groups, init) -> None:
    """The builders' arguments, checked before any layer is made (a clear error, not torch's)."""
    if init is not None:
        check_choice("init", init, ("auto", *INITS))
    check_int("n_out", n_out, low=1)
    check_int("width", width, low=1)
    check_int("depth", depth, low=0)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("norm", norm, NORMS)
    check_float("dropout", dropout, low=0, high=1, high_open=True)
    check_int("groups", groups, low=1)
    if norm == "group" and depth and width % groups:
        raise ValueError(f"groups must divide width for group norm, got groups={groups}, width={width}")


def _norm(norm: str, channels: int, groups: int, dims: int, spatial: bool) -> list[nn.Module]:
    if norm == "none":
        return []
    if norm == "batch":
        return [nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)]
    if norm == "layer":
        return [nn.GroupNorm(1, channels) if spatial else nn.LayerNorm(channels)]
    if norm == "group":
        return [nn.GroupNorm(groups, channels)]
    if norm == "instance":
        return [nn.InstanceNorm1d(channels, affine=True) if dims == 1 else nn.InstanceNorm2d(channels, affine=True)]
    raise ValueError(f"unknown norm {norm!r}")


def initialize(model: nn.Module, init: str) -> None:
    """Initialize the weights of every Linear/Conv layer with ``init``; biases to 0."""
    fn = INITS[check_choice("init", init, INITS)]
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            fn(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)  # the layers whose weights init, penalties and gradient norms concern


@torch.no_grad()
def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradient of each Linear/Conv weight: shows vanishing/exploding gradients
    (per epoch in a run: ``training.grad_norms``, the ``GradNorms`` callback)."""
    return {
        name: float(m.weight.grad.norm())
        for name, m in model.named_modules()
        if isinstance(m, WEIGHT_LAYERS) and m.weight.grad is not None
    }
