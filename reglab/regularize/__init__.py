"""reglab.regularize: norm penalties on the loss, noise on inputs or weights, and dropout."""

from reglab.regularize.dropout import Dropout, dropout_mask
from reglab.regularize.noise import InputNoise, WeightNoise, gaussian_noise
from reglab.regularize.penalties import Penalty, l1_penalty, l2_penalty, penalized, weight_stats
from reglab.regularize.weights import is_weight, named_weights, weight_grad_norms, weights

__all__ = [
    "Dropout",
    "dropout_mask",
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
