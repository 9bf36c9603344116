"""The learning-curve figure of reglab train: what each panel shows."""

import math

from reglab.lab.plots import curves_figure


def _history(lrs, grad_steps=False):
    return [
        {"epoch": e, "train_loss": 1 / e, "valid_loss": 1.2 / e, "train_acc": 0.5, "valid_acc": 0.4, "lr": lr,
         **({"grad_norm_1": 0.1, "grad_norm_2": 1.0, "grad_norm_steps": [1.0, 2.0]} if grad_steps else {})}
        for e, lr in enumerate(lrs, start=1)
    ]  # fmt: skip


def test_a_changing_learning_rate_gets_its_own_panel():
    lrs = [0.1 * 0.5 * (1 + math.cos(math.pi * e / 10)) for e in range(10)]
    fig = curves_figure(_history(lrs))
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["cross-entropy loss", "accuracy", "learning rate η"]
    x, y = fig.axes[2].lines[0].get_data()
    assert list(x) == list(range(1, 11)) and list(y) == lrs


def test_a_constant_learning_rate_draws_no_panel_and_per_step_norms_are_not_layers():
    fig = curves_figure(_history([1e-3] * 5, grad_steps=True))
    assert [ax.get_ylabel() for ax in fig.axes] == ["cross-entropy loss", "accuracy", "mean gradient norm ‖∂L/∂W‖"]
    assert [line.get_label() for line in fig.axes[2].lines] == ["layer 1", "layer 2"]
