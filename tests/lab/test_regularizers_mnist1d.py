"""Issue acceptance: on MNIST-1D each regularizer lowers the baseline's final validation loss
(one seed here; benchmarks/regularizers.py runs three), and strong L1 zeroes the first layer."""

import pytest

from reglab.lab.recipe import Recipe
from reglab.lab.run import train_recipe

ARMS = {  # sensible strengths, as in benchmarks/regularizers.py
    "l2": {"regularization.l2": 1e-3},
    "dropout": {"model.dropout": 0.3},
    "input_noise": {"regularization.input_noise": 0.3},
    "shift": {"augment.shift": 4},
    "label_smoothing": {"mixing.label_smoothing": 0.1},
    "mixup": {"mixing.mixup_alpha": 0.4},
}


@pytest.fixture(scope="module")
def baseline_final_valid_loss():
    return train_recipe(Recipe()).history[-1]["valid_loss"]


@pytest.mark.parametrize("arm", list(ARMS))
@pytest.mark.slow
def test_regularizer_lowers_final_validation_loss(arm, baseline_final_valid_loss):
    result = train_recipe(Recipe().updated(ARMS[arm]))
    assert result.history[-1]["valid_loss"] < baseline_final_valid_loss


@pytest.mark.slow
def test_strong_proximal_l1_zeroes_half_the_first_layer():
    result = train_recipe(Recipe().updated({"optimizer.options.l1_proximal": 0.5}))
    last = result.history[-1]
    assert last["first_tiny_frac"] >= 0.5 and last["first_zero_frac"] >= 0.5
    first = result.model[1].weight  # Flatten, then the first Linear
    assert float((first == 0).float().mean()) == pytest.approx(last["first_zero_frac"])
