"""reglab.regularize: norm penalties on the loss, and noise on inputs or weights."""

from reglab.regularize.noise import InputNoise, WeightNoise, gaussian_noise
from reglab.regularize.penalties import Penalty, l1_penalty, l2_penalty, penalized, weight_stats
from reglab.regularize.weights import is_weight, named_weights, weight_grad_norms, weights

__all__ = [
    "InputNoise",
    "Penalty",
    "WeightNoise",
    "gaussian_noise",
    "l1_penalty",
    "l2_penalty",
    "penalized",
    "is_weight",
    "named_weights",
    "weight_grad_norms",
    "weights",
    "weight_stats",
]
