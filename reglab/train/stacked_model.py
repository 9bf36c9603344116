"""The stacked model of ``reglab.train.stacked``: S copies of one ``nn.Sequential`` as one
model on (S, B, ...) inputs, whose parameters and buffers carry a leading copy axis:

    Linear:      y_s = x_s W_sᵀ + b_s           (one ``baddbmm`` for the S copies)
    batch norm:  each copy normalized by its own batch statistics, its own running averages
    layer norm:  over each copy's features, its own γ and β
    dropout:     each copy's mask drawn from its own generator, seeded as its run's global RNG

``copy_to`` writes a copy's tensors back into its own model; ``layers_problem`` says why models
cannot be stacked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reglab import matmul
from reglab.errors import ReglabError
from reglab.regularize.dropout import Dropout, dropout_mask

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity)


class _Linear(nn.Module):
    """The copies' weights stored transposed, (S, in, out): ``baddbmm`` then takes them as they
    are and their gradient ``xᵀ ∂L/∂y`` comes out of the backward product in the weight's own
    layout (stored as (S, out, in), every step's gradient would be copied into that layout:
    15% of a stacked step, BENCHMARKS.md)."""

    transposed = ("weight",)  # stored as the copies' own tensors transposed
    matmul_kernel = "aten"  # or "onednn" (reglab.matmul): each copy's product by oneDNN, as its own Linear's

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach().t() for m in layers]).contiguous())  # (S, in, out)
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]).unsqueeze(1))  # (S, 1, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.matmul_kernel == "onednn" and matmul.onednn_fits(x[0], self.weight[0].t(), None):
            return matmul.stacked_product(x, self.weight, self.bias)
        return torch.baddbmm(self.bias, x, self.weight)


class _BatchNorm(nn.Module):
    is_norm = True  # its γ and β are not weights (reglab.regularize.weights)

    def __init__(self, layers: Sequence[nn.BatchNorm1d]) -> None:
        super().__init__()
        first = layers[0]
        self.eps, self.momentum = first.eps, first.momentum
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]))
        self.register_buffer("running_mean", torch.stack([m.running_mean for m in layers]))
        self.register_buffer("running_var", torch.stack([m.running_var for m in layers]))
        self.register_buffer("num_batches_tracked", torch.stack([m.num_batches_tracked for m in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        out = [
            nn.functional.batch_norm(xs, mean, var, w, b, self.training, self.momentum, self.eps)
            for xs, mean, var, w, b in zip(
                x.unbind(), self.running_mean, self.running_var, self.weight.unbind(), self.bias.unbind()
            )
        ]  # each copy as its own BatchNorm1d: its batch's statistics, its running averages (updated in place)
        return torch.stack(out)


class _LayerNorm(nn.Module):
    is_norm = True

    def __init__(self, layers: Sequence[nn.LayerNorm]) -> None:
        super().__init__()
        self.shape, self.eps = layers[0].normalized_shape, layers[0].eps
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).unsqueeze(1))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, nn.functional.layer_norm(x, self.shape, eps=self.eps), self.weight)


class _Dropout(nn.Module):
    """Each copy's mask from its own generator, as its own layer draws it from the global RNG on
    CPU: for ``reglab.regularize.Dropout``, ``dropout_mask``'s (copy s's slice of the uniforms
    drawn from generator s); for a plain ``nn.Dropout``, ``F.dropout``'s ``bernoulli(1 − p)``
    divided by ``1 − p``. Either times the input. (Off the CPU both layers use ``F.dropout``'s
    fused kernel, which draws its masks otherwise: a copy's masks are its own, not its separate
    run's.)"""

    def __init__(self, p: float, generators: Sequence[torch.Generator], uniform: bool) -> None:
        super().__init__()
        self.p, self.generators, self.uniform = p, list(generators), uniform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:  # every unit dropped, as F.dropout
            return x * 0
        if self.uniform:
            u = torch.empty(x.shape, device=x.device)
            for row, g in zip(u, self.generators):
                row.uniform_(generator=g)
            return x * dropout_mask(x, self.p, out=u)
        mask = torch.empty_like(x)
        for m, g in zip(mask, self.generators):
            m.bernoulli_(1 - self.p, generator=g)
        return x * mask.div_(1 - self.p)


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


def layers_problem(models: Sequence[nn.Module]) -> str | None:
    """Why these models cannot be stacked, or None (each an ``nn.Sequential`` of the same
    layers: Flatten, Linear, BatchNorm1d, LayerNorm over the features, Dropout, elementwise
    activations)."""
    if not all(isinstance(m, nn.Sequential) for m in models):
        return f"the model is a {type(models[0]).__name__}, not a sequence of layers"
    kinds = [[type(layer) for layer in m] for m in models]
    if any(k != kinds[0] for k in kinds):
        return "the copies' layers differ"
    for layer in models[0]:
        if isinstance(layer, nn.LayerNorm) and len(layer.normalized_shape) != 1:
            return "layer norm over more than the features"
        if not isinstance(layer, (nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.LayerNorm, nn.Dropout, *ELEMENTWISE)):
            return f"a {type(layer).__name__} layer"
        if isinstance(layer, nn.Linear) and layer.bias is None:
            return "a Linear layer without a bias"
    return None


class StackedModel(nn.Module):
    """The S copies' ``nn.Sequential`` models as one model on (S, B, ...) inputs; ``copy_to``
    writes copy s's parameters and buffers back into its own model."""

    def __init__(self, models: Sequence[nn.Sequential], generators: Sequence[torch.Generator]) -> None:
        super().__init__()
        problem = layers_problem(models)
        if problem:
            raise ReglabError(f"these models cannot be stacked: {problem}")
        layers: list[nn.Module] = []
        for same in zip(*models):
            first = same[0]
            if isinstance(first, nn.Flatten):
                layers.append(_Flatten())
            elif isinstance(first, nn.Linear):
                layers.append(_Linear(same))
            elif isinstance(first, nn.BatchNorm1d):
                layers.append(_BatchNorm(same))
            elif isinstance(first, nn.LayerNorm):
                layers.append(_LayerNorm(same))
            elif isinstance(first, nn.Dropout):
                layers.append(_Dropout(first.p, generators, uniform=isinstance(first, Dropout)))
            else:
                layers.append(first)  # elementwise: the same for every copy
        self.layers = nn.Sequential(*layers)
        self.models = list(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def _pairs(self) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """(stacked tensor, the copies' own tensors) for every parameter and buffer, in order;
        found at the first use (after ``.to(device)``, which replaces buffers) and kept. The
        copies' tensors are listed as views in the stacked layout: a Linear weight's transposed."""
        if getattr(self, "_found", None) is None:
            self._found = self._find_pairs()
        return self._found

    def _find_pairs(self) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        out = []
        for i, layer in enumerate(self.layers):
            own = [dict(m[i].named_parameters()) | dict(m[i].named_buffers()) for m in self.models]
            flipped = getattr(layer, "transposed", ())
            for name, t in [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]:
                out.append((t, [o[name].t() if name in flipped else o[name] for o in own]))
        return out

    @torch.no_grad()
    def copy_to(self, s: int) -> None:
        for stacked, own in self._pairs():
            own[s].copy_(stacked[s].reshape(own[s].shape))  # a weight's own view is transposed, as stacked

    @torch.no_grad()
    def snapshot(self, s: int) -> list[torch.Tensor]:
        return [stacked[s].clone() for stacked, _ in self._pairs()]

    @torch.no_grad()
    def restore(self, s: int, saved: list[torch.Tensor]) -> None:
        for (stacked, _), value in zip(self._pairs(), saved):
            stacked[s].copy_(value)
