"""A user's own pieces, named by import path in the tests (``custom_parts:linear``)."""

import math

import torch


def linear(input_shape, num_outputs, config):
    """A linear model: flatten, then one Linear layer (width and depth ignored)."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(math.prod(input_shape), num_outputs))


def two_arguments(input_shape, num_outputs):
    """The wrong signature for a model builder (it takes no config)."""
    return linear(input_shape, num_outputs, None)


def jitter(x, generator):
    """An augmentation: add tiny noise drawn from the run's generator."""
    return x + 1e-3 * torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)


NOT_A_FUNCTION = 3


def line(config, regression):
    """A data set by import path: y = 2x + 1 with noise (targets when regression, else classes)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 1)).astype(np.float32)
    y = 2 * x[:, 0] + 1 + 0.1 * rng.normal(size=120)
    return (x, y, None, None) if regression else (x, (y > 1).astype(np.int64), None, None)
