"""Training: the epoch loop, callbacks, checkpoints and the overfitting diagnosis."""

from reglab.train.callbacks import Callback, EarlyStopping, GradNorms, LRScheduler, ProgressBar
from reglab.train.checkpoint import Checkpointer
from reglab.train.diagnose import Diagnosis, diagnose
from reglab.train.loop import History, Trainer, fit
from reglab.train.losses import LOSSES, chance_loss

__all__ = [
    "Callback",
    "Checkpointer",
    "Diagnosis",
    "EarlyStopping",
    "GradNorms",
    "History",
    "LOSSES",
    "LRScheduler",
    "ProgressBar",
    "Trainer",
    "chance_loss",
    "diagnose",
    "fit",
]
