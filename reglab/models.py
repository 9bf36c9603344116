"""Model builders: ``mlp`` and ``cnn`` from ``torch.nn`` layers and ``torch.nn.init``.

A hidden block is ``layer -> norm -> activation -> dropout`` (plus 2x max-pooling for cnn).
The layers are PyTorch's own (``reglab.matmul.Linear`` is ``nn.Linear`` whose product a trainer
may give to oneDNN); tests/test_models.py checks them against TECHNIQUES.md 8-10:

- Dropout (p): in ``train()`` mode each unit is zeroed with probability p and survivors are
  scaled by 1/(1-p); in ``eval()`` mode nothing is dropped (``reglab.regularize.Dropout``, an
  ``nn.Dropout`` whose mask on CPU is drawn from float32 uniforms, in half the time).
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reglab._checks import check_choice, check_float, check_int
from reglab.errors import ReglabError, ReglabTypeError
from reglab.matmul import Linear
from reglab.recurrent import Recurrent
from reglab.registry import Registry
from reglab.regularize.dropout import Dropout
from reglab.regularize.weights import NORM_LAYERS, named_weights, weight_grad_norms

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry(
    "activation",
    {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "tanh": nn.Tanh, "sigmoid": nn.Sigmoid},
)

INITS: Registry[Callable[[torch.Tensor], Any]] = Registry(
    "init",
    {
        "xavier_uniform": nn.init.xavier_uniform_,
        "xavier_normal": nn.init.xavier_normal_,
        "he_uniform": lambda w: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"),
        "he_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
    },
)
INIT_CHOICES = ("auto", *INITS)  # what a builder's ``init=`` takes: auto picks by activation


def _batch(channels: int, groups: int, dims: int, spatial: bool) -> list[nn.Module]:
    return [nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)]


def _layer(channels: int, groups: int, dims: int, spatial: bool) -> list[nn.Module]:
    return [nn.GroupNorm(1, channels) if spatial else nn.LayerNorm(channels)]


def _instance(channels: int, groups: int, dims: int, spatial: bool) -> list[nn.Module]:
    return [nn.InstanceNorm1d(channels, affine=True) if dims == 1 else nn.InstanceNorm2d(channels, affine=True)]


# name -> (channels, groups, dims, spatial) -> the layers after a Linear/Conv
NORMS: Registry[Callable[[int, int, int, bool], list[nn.Module]]] = Registry(
    "norm",
    {
        "none": lambda channels, groups, dims, spatial: [],
        "batch": _batch,
        "layer": _layer,
        "group": lambda channels, groups, dims, spatial: [nn.GroupNorm(groups, channels)],
        "instance": _instance,
    },
)


@dataclass(frozen=True)
class ModelKind:
    """A model builder and what a recipe needs to know of it."""

    build: Callable[[tuple[int, ...], int, Any], nn.Module]  # (input_shape, num_outputs, config) -> model
    default_width: int = 0  # the width used when model.width = 0 (0: the builder decides)
    norms: tuple[str, ...] | None = None  # the norms it takes (None: any, or the builder checks)
    norm_hint: str = ""  # why another norm is refused, for the error
    signals: bool = False  # reads signals only: (L,) or (C, L) samples, not images


def _build_mlp(input_shape: tuple[int, ...], num_outputs: int, config: Any) -> nn.Module:
    return mlp(math.prod(input_shape), num_outputs, config.resolved_width, config.depth, config.activation,
               config.norm, config.dropout, config.groups, config.init, config.slope)  # fmt: skip


def _build_cnn(input_shape: tuple[int, ...], num_outputs: int, config: Any) -> nn.Module:
    return cnn(input_shape, num_outputs, config.resolved_width, config.depth, config.activation,
               config.norm, config.dropout, config.groups, config.init, config.slope)  # fmt: skip


def _build_recurrent(cell: str) -> Callable[[tuple[int, ...], int, Any], nn.Module]:
    def build(input_shape: tuple[int, ...], num_outputs: int, config: Any) -> nn.Module:
        return rnn(input_shape, num_outputs, config.resolved_width, config.depth, cell, config.norm, config.dropout,
                   config.init)  # fmt: skip

    return build


MODEL_KINDS: Registry[ModelKind] = Registry(
    "model kind",
    {
        "mlp": ModelKind(_build_mlp, 256, ("none", "batch", "layer", "group"),
                         "needs spatial dimensions: use model.kind = 'cnn', or 'layer' norm for an mlp"),
        "cnn": ModelKind(_build_cnn, 32),
        "rnn": ModelKind(_build_recurrent("rnn"), 64, ("none", "layer"),
                         "is not one a recurrent layer takes: rnn takes none or layer (inside the recurrence)", True),
        "gru": ModelKind(_build_recurrent("gru"), 64, ("none",), "is not one gru takes: none", True),
    },
    open=True,
    wrap=ModelKind,
    arity=3,
    arguments="input_shape, num_outputs, config",
)  # fmt: skip


def register_model(
    name: str, build: Callable[[tuple[int, ...], int, Any], nn.Module], *, default_width: int = 0, replace: bool = False
) -> Callable[[tuple[int, ...], int, Any], nn.Module]:
    """Make ``build(input_shape, num_outputs, config)`` a model kind: a recipe's ``model.kind =
    name`` then builds it (``config`` is the recipe's model section: width, depth, dropout, ...;
    ``config.resolved_width`` is ``width`` or ``default_width``). Returns ``build``.

    >>> reglab.register_model("linear", lambda shape, n, config: torch.nn.Sequential(
    ...     torch.nn.Flatten(), torch.nn.Linear(math.prod(shape), n)))  # doctest: +SKIP
    """
    if not callable(build):
        raise ReglabTypeError(
            f"register_model: build must be a function (input_shape, num_outputs, config); got {build!r}"
        )
    check_int("default_width", default_width, low=0)
    MODEL_KINDS.register(name, ModelKind(build, default_width), replace=replace)
    return build


def build_model(config: Any, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the model a recipe's model section ``config`` describes (its ``kind`` names a
    ``MODEL_KINDS`` entry) for inputs of ``input_shape`` (one sample) and ``num_classes`` outputs."""
    return MODEL_KINDS[config.kind].build(tuple(input_shape), num_classes, config)


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
    slope: float = 0.01,
) -> nn.Sequential:
    """Flatten, then ``depth`` blocks ``Linear -> norm -> activation -> dropout``, then Linear;
    weights initialized by ``init`` (see the module's docstring; ``None``: PyTorch's default);
    ``slope`` is leaky ReLU's negative slope: ``max(x, slope · x)``.

    >>> model = mlp(40, 10, width=256, depth=2, norm="layer", dropout=0.2, init="auto")
    """
    check_int("n_in", n_in, low=1)
    _check_blocks(n_out, width, depth, activation, norm, dropout, groups, init, slope)
    if norm == "instance":
        raise ReglabError("instance norm needs spatial dimensions; use a cnn, or layer norm for an mlp")
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers.append(Linear(n_in if i == 0 else width, width))
        layers += _norm(norm, width, groups, dims=1, spatial=False)
        layers.append(_activation(activation, slope))
        if dropout > 0:
            layers.append(Dropout(dropout))
    layers.append(Linear(n_in if depth == 0 else width, n_out))
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
    slope: float = 0.01,
) -> nn.Sequential:
    """``depth`` blocks ``Conv(3) -> norm -> activation -> max-pool(2) -> dropout``, global
    average pooling, then Linear. 1-D convolutions for ``(C, L)`` or ``(L,)`` inputs, 2-D for
    ``(C, H, W)`` (the shape of one sample); weights initialized by ``init`` as for ``mlp``.

    >>> model = cnn((1, 28, 28), 10, width=32, depth=2, norm="batch", init="he_normal")
    """
    _check_blocks(n_out, width, depth, activation, norm, dropout, groups, init, slope)
    input_shape = _sample_shape(input_shape)
    layers: list[nn.Module] = []
    if len(input_shape) == 1:  # a flat signal: one channel
        layers.append(nn.Unflatten(1, (1, input_shape[0])))
        input_shape = (1, *input_shape)
    dims = len(input_shape) - 1
    if dims not in (1, 2):
        raise ReglabError(f"cnn needs inputs of shape (C, L) or (C, H, W), got {input_shape}")
    conv, pool = (nn.Conv1d, nn.MaxPool1d) if dims == 1 else (nn.Conv2d, nn.MaxPool2d)
    channels, size = input_shape[0], min(input_shape[1:])
    for _ in range(depth):
        layers.append(conv(channels, width, kernel_size=3, padding=1))
        layers += _norm(norm, width, groups, dims=dims, spatial=True)
        layers.append(_activation(activation, slope))
        if size >= 2:
            layers.append(pool(2))
            size //= 2
        if dropout > 0:
            layers.append(Dropout(dropout))
        channels = width
    pool_all = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
    layers += [pool_all, nn.Flatten(), Linear(channels, n_out)]
    return _initialized(nn.Sequential(*layers), init, activation)


def rnn(
    input_shape: tuple[int, ...],
    n_out: int,
    width: int = 64,
    depth: int = 1,
    cell: str = "rnn",
    norm: str = "none",
    dropout: float = 0.0,
    init: str | None = None,
) -> nn.Module:
    """A recurrent net reading a signal step by step (``reglab.recurrent``): ``depth`` layers
    (at least 1) of ``width`` hidden units, ``cell`` "rnn" (tanh) or "gru", ``norm`` "none" or
    (rnn only) "layer" inside the recurrence; the last hidden state -> dropout -> Linear. Inputs
    of shape ``(L,)`` or ``(C, L)`` (one sample); an image is refused. ``init`` as for ``mlp``
    (``auto``: Xavier, for tanh and the gates' sigmoids) on every input and recurrent matrix.

    >>> model = rnn((40,), 10, width=64, cell="gru", init="auto")
    """
    check_choice("cell", cell, ("rnn", "gru"))
    _check_blocks(n_out, width, depth, "tanh", norm, dropout, 1, init)
    check_int("depth", depth, low=1)
    shape = _sample_shape(input_shape)
    if len(shape) > 2:
        raise ReglabError(
            f"model.kind = {cell!r} reads signals, samples of shape (L,) or (C, L); this data set's samples have shape "
            f"{shape} (images): use model.kind = 'cnn' or 'mlp'"
        )
    allowed = ("none", "layer") if cell == "rnn" else ("none",)
    if norm not in allowed:
        raise ReglabError(f"{cell} takes norm {' or '.join(allowed)}, got {norm!r}")
    model = Recurrent(1 if len(shape) == 1 else shape[0], n_out, width, depth, cell, norm, dropout)
    if init is not None:
        initialize(model, "xavier_uniform" if init == "auto" else init)
    return model


def _sample_shape(shape: object) -> tuple[int, ...]:
    """``cnn``'s ``input_shape``: a tuple of positive integers (one sample's shape, no batch axis)."""
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise ReglabTypeError(
            f"input_shape must be the shape of one sample, such as (1, 40) or (1, 28, 28), got {shape!r} "
            f"({type(shape).__name__})"
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


def _activation(name: str, slope: float) -> nn.Module:
    return nn.LeakyReLU(slope) if name == "leaky_relu" else ACTIVATIONS[name]()


def _check_blocks(n_out, width, depth, activation, norm, dropout, groups, init, slope=0.01) -> None:
    """The builders' arguments, checked before any layer is made (a clear error, not torch's)."""
    if init is not None:
        check_choice("init", init, INIT_CHOICES)
    check_int("n_out", n_out, low=1)
    check_int("width", width, low=1)
    check_int("depth", depth, low=0)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("norm", norm, NORMS)
    check_float("dropout", dropout, low=0, high=1, high_open=True)
    check_int("groups", groups, low=1)
    check_float("slope", slope, low=0, high=1, high_open=True)
    if norm == "group" and depth and width % groups:
        raise ReglabError(f"groups must divide width for group norm, got groups={groups}, width={width}")


def _norm(norm: str, channels: int, groups: int, dims: int, spatial: bool) -> list[nn.Module]:
    return NORMS[norm](channels, groups, dims, spatial)


def initialize(model: nn.Module, init: str) -> None:
    """Initialize every weight of ``model`` that has a fan-in and a fan-out (``ndim >= 2``:
    Linear, Conv and recurrent matrices; ``reglab.regularize.weights``) with ``init``, in module
    order; the biases of those layers to 0."""
    fn = INITS[check_choice("init", init, INITS)]
    for name, w in named_weights(model):
        if w.ndim < 2:
            continue
        fn(w)
        module = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        for bias_name, b in module.named_parameters(recurse=False):
            if bias_name.startswith("bias") and not isinstance(module, NORM_LAYERS):
                nn.init.zeros_(b)


def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradient of each layer's weight, keyed by layer: shows vanishing/exploding
    gradients (per epoch in a run: ``training.grad_norms``, the ``GradNorms`` callback)."""
    return weight_grad_norms(model)
