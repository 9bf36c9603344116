"""Recurrent layers that read a signal one step at a time (``reglab.models.rnn`` builds them).

A sample of shape ``(L,)`` is a sequence of L steps of one feature, ``(C, L)`` one of L steps
of C features (MNIST-1D: 40 steps of 1). The recurrence (Elman 1990; Cho et al. 2014 for the GRU)

    h_t = tanh(W x_t + U h_{t−1} + b)                 (rnn: torch.nn.RNN)
    h_t = tanh(LN(W x_t + U h_{t−1}) + b)             (rnn with layer norm: ``LayerNormRNN``)
    GRU: z, r gates, h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}  (torch.nn.GRU)

runs from h_0 = 0; the last step's hidden state of the last layer goes through dropout to a
Linear read-out. Layer norm inside the recurrence (Ba et al. 2016) normalizes each step's
pre-activation across the hidden units with a learned gain and bias (LayerNorm's β is the b
above), which keeps h_t's scale steady through time; batch norm has no running statistics that
fit every step and is not offered.
"""

from __future__ import annotations

import torch
from torch import nn

from reglab.regularize.dropout import Dropout


class LayerNormRNN(nn.Module):
    """A stack of tanh recurrent layers with layer norm inside the recurrence (equation above);
    ``forward(x)`` with x of shape (N, L, C) returns the hidden states (N, L, H)."""

    def __init__(self, n_in: int, width: int, depth: int) -> None:
        super().__init__()
        self.inputs = nn.ModuleList(nn.Linear(n_in if i == 0 else width, width, bias=False) for i in range(depth))
        self.hidden = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for w_in, w_h, norm in zip(self.inputs, self.hidden, self.norms):
            xs = w_in(x)  # W x_t for every step in one product
            h = xs.new_zeros(xs.shape[0], xs.shape[2])
            out = []
            for t in range(xs.shape[1]):
                h = torch.tanh(norm(xs[:, t] + w_h(h)))
                out.append(h)
            x = torch.stack(out, 1)
        return x


class Recurrent(nn.Module):
    """Signal (N, L) or (N, C, L) -> recurrent layers over the L steps -> dropout -> Linear."""

    def __init__(self, n_features: int, n_out: int, width: int, depth: int, cell: str, norm: str, dropout: float):
        super().__init__()
        if norm == "layer":
            self.recurrent: nn.Module = LayerNormRNN(n_features, width, depth)
        elif cell == "gru":
            self.recurrent = nn.GRU(n_features, width, num_layers=depth, batch_first=True)
        else:
            self.recurrent = nn.RNN(n_features, width, num_layers=depth, nonlinearity="tanh", batch_first=True)
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.unsqueeze(-1) if x.ndim == 2 else x.transpose(1, 2)  # (N, L, C)
        out = self.recurrent(steps)
        h = (out[0] if isinstance(out, tuple) else out)[:, -1]
        return self.head(self.dropout(h))
