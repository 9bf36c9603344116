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
