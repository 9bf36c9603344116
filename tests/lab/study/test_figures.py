"""The report's figures: a shared y-limit that shows every arm, in the loss's own units."""

import numpy as np
import pytest

from reglab.lab.study import figures


def _history(valid, train=None):
    return [{"valid_loss": v, "train_loss": t} for v, t in zip(valid, train or [v / 2 for v in valid])]


def test_common_top_shows_every_validation_curve_in_the_loss_units():
    curves = [np.array([2.3, 1.2, 1.8]), np.array([2.1, 1.0, 0.9]), np.array([1900.0, 1500.0, np.nan])]
    assert figures._common_top(curves[:2]) == pytest.approx(2.3 * 1.05)
    assert figures._common_top([c * 1000 for c in curves[:2]]) == pytest.approx(2300 * 1.05), (
        "MSE in large units is not clipped"
    )
    assert figures._common_top(curves) == pytest.approx(2 * 2.3 * 1.05), "one diverging arm does not flatten the others"
    assert figures._common_top([np.array([np.nan, np.inf])]) is None


def test_learning_curves_and_bars_render_for_both_tasks():
    curves = {"baseline": [_history([1.0, 0.8, 0.9])], "dropout": [_history([1.0, 0.7, 0.6])]}
    png = figures.learning_curves(curves, ["dropout", "baseline"], "mean squared error")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    board = [
        {
            "arm": "dropout",
            "verdict": "better",
            "test_loss": 0.6,
            "test_loss_std": 0.1,
            "test_acc": np.nan,
            "test_acc_std": np.nan,
        },
        {
            "arm": "baseline",
            "verdict": "baseline",
            "test_loss": 0.9,
            "test_loss_std": 0.05,
            "test_acc": np.nan,
            "test_acc_std": np.nan,
        },
    ]
    assert figures.metric_bars(board, "test_loss", "test mean squared error")[:4] == b"\x89PNG"
