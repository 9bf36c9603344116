"""Input and weight noise."""

import numpy as np
import pytest
import torch
from torch import nn

from reglab.regularize import InputNoise, WeightNoise, gaussian_noise


def test_gaussian_noise_statistics_and_seed():
    x = torch.zeros(4000, 1, 50)
    g = torch.Generator().manual_seed(0)
    out = gaussian_noise(x, g, sigma=0.3)
    assert float(out.std()) == pytest.approx(0.3, rel=0.01) and abs(float(out.mean())) < 0.003
    assert torch.equal(out, gaussian_noise(x, torch.Generator().manual_seed(0), sigma=0.3))
    half = gaussian_noise(x, torch.Generator().manual_seed(1), sigma=1.0, p=0.5)
    touched = (half != 0).flatten(1).any(1).float().mean()
    assert float(touched) == pytest.approx(0.5, abs=0.03)
    xn, y = InputNoise(0.1)(x[:3], torch.tensor([0, 1, 2]), g)
    assert xn.shape == (3, 1, 50) and torch.equal(y, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_noise(x, g, sigma=-1.0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        gaussian_noise(x, None, sigma=0.1)
    for cls in (InputNoise, WeightNoise):
        with pytest.raises(ValueError, match=f"{cls.__name__} sigma must be >= 0, got -0.1"):
            cls(-0.1)
    with pytest.raises(TypeError, match=r"gaussian_noise needs floating-point inputs, got torch.uint8"):
        gaussian_noise(torch.zeros(2, 1, 5, dtype=torch.uint8), g, sigma=0.1)
    with pytest.raises(TypeError, match=r"gaussian_noise: x must be a torch.Tensor, got ndarray; torch.as_tensor"):
        gaussian_noise(np.zeros((2, 3), dtype=np.float32), torch.Generator())


class FakeTrainer:
    def __init__(self, model):
        self.model = model
        self.generator = torch.Generator().manual_seed(3)


def test_weight_noise_perturbs_for_the_step_and_restores():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    clean = [p.detach().clone() for p in model.parameters()]
    hook = WeightNoise(0.5)
    t = FakeTrainer(model)
    hook.on_batch_begin(t)
    noisy = [p.detach().clone() for p in model.parameters()]
    assert not torch.equal(noisy[0], clean[0]) and torch.equal(noisy[1], clean[1]), "weights perturbed, biases not"
    assert float((noisy[0] - clean[0]).std()) == pytest.approx(0.5, rel=0.5)
    out = model(torch.ones(5, 3)).sum()
    out.backward()  # the gradient is taken at the perturbed weights
    hook.on_after_backward(t)
    for p, c in zip(model.parameters(), clean):
        assert torch.equal(p.detach(), c)
