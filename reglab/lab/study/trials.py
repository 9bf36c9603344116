"""What a study stores of a finished trial: the validation loss it returns (Optuna's value) and
its user attributes (summary, history, the first layer's weights)."""

from __future__ import annotations

from typing import Any

import torch

from reglab.lab.run import finite
from reglab.regularize.weights import weights

MAX_COLUMNS = 4096  # a first layer with more inputs keeps no per-input column norms (Fashion-MNIST has 784)


def returned_valid_loss(summary: dict[str, Any], history: list[dict[str, Any]]) -> float:
    """Validation loss of the model the run returns (the restored best epoch's, or the last)."""
    epoch = summary.get("restored_epoch") or len(history)
    value = history[epoch - 1]["valid_loss"]
    return value if value == value else float("inf")


def trial_attrs(result: Any) -> dict[str, Any]:
    """What is kept with a trial: summary (with the returned model's validation loss and
    fractions of exactly-zero weights), per-epoch history, and the first layer's weights: a
    histogram, their root mean square and, for a Linear layer of at most ``MAX_COLUMNS`` inputs,
    the norm of each input's column (which inputs the model uses: feature selection)."""
    summary = dict(result.summary)
    history = list(result.history)
    summary["valid_loss"] = returned_valid_loss(summary, history)
    matrix = weights(result.model)[0].detach().double().cpu()
    first = matrix.flatten()  # zero fractions: in the summary
    first = first[first.isfinite()]  # a diverged run's weights may be NaN: histogram what is finite
    m = float(first.abs().max()) if len(first) else 0.0
    m = m or 1.0
    histogram = {
        "edges": torch.linspace(-m, m, 61).tolist(),
        "counts": torch.histc(first, bins=60, min=-m, max=m).tolist(),
        "zeros": int((first == 0).sum()),
        "rms": float(first.pow(2).mean().sqrt()) if len(first) else 0.0,  # sqrt(mean w²): does a penalty shrink?
    }
    if matrix.dim() == 2 and matrix.shape[1] <= MAX_COLUMNS:  # a Linear layer: weight on each input
        histogram["columns"] = matrix.norm(dim=0).tolist()  # ‖W[:, j]‖₂ per input j: which inputs are used
    return finite({"summary": summary, "history": history, "weights": histogram})
