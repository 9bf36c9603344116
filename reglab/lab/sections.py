"""The recipe's sections: every field declared once (``reglab.lab.fields.setting``).

Each section is a frozen dataclass whose fields carry their default, a one-line why, their
range or choices and their flag; ``Section`` validates them when the section is built and then
runs the section's own cross-field rules (``check``). The names a field may take come from the
registries of the library modules that implement them (``MODEL_KINDS``, ``DATASETS``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reglab._checks import check_float
from reglab.augment import AUGMENTATIONS
from reglab.data import DATASETS, FILE_FORMATS, LABEL_COLUMN, TEST_FRACTION, VALID_FRACTION
from reglab.errors import ReglabError, ReglabTypeError
from reglab.lab.fields import Key, Section, setting
from reglab.matmul import KERNELS
from reglab.models import ACTIVATIONS, INIT_CHOICES, MODEL_KINDS, NORMS
from reglab.optim import OPTIMIZERS, check_options
from reglab.optim.schedules import SCHEDULES
from reglab.train.loop import MONITORS
from reglab.train.losses import LOSSES


@dataclass(frozen=True)
class DataConfig(Section):
    section = "data"
    family = "data"

    name: str = setting("mnist1d", "data set: MNIST-1D is small, hard enough for an MLP to overfit within seconds",
                        choices=DATASETS, flag="--dataset", study=True, metavar="NAME|FILE")  # fmt: skip
    path: str = setting("", "file (.npz/.csv) or folder (fashion-mnist IDX files); empty: the set's default place",
                        flag="--data-dir", study=True, metavar="DIR")  # fmt: skip
    valid_fraction: float = setting(VALID_FRACTION, "fraction of the training set held out for validation, by seed",
                                    low=0, high=1, low_open=True, high_open=True, flag="--valid-fraction")  # fmt: skip
    test_fraction: float = setting(TEST_FRACTION, "test fraction, for data without a test split of its own (digits, "
                                                  "files)",
                                   low=0, high=1, low_open=True, high_open=True)  # fmt: skip
    batch_size: int = setting(100, "mini-batch size; >= the training-set size gives full-batch gradient descent",
                              low=1, flag="--batch-size", study=True)  # fmt: skip
    train_size: int = setting(0, "training samples used: 0 = the whole training split; N = a random N of it",
                              low=0, flag="--train-size", metavar="N")  # fmt: skip
    label_column: str = setting(
        LABEL_COLUMN, "csv only: the column holding the labels (0..K-1 or class names) or target"
    )
    num_classes: int = setting(0, "classes K: 0 = the largest label + 1, every class with samples; set K to "
                                  "confirm labels 0..K-1 some of which have none",
                               low=0, flag="--classes", metavar="K")  # fmt: skip
    noise_features: int = setting(0, "N pure-noise inputs appended to each sample (signals, tabular data): which "
                                     "inputs does a penalty leave weight on? (feature selection)",
                                  low=0, flag="--noise-features", metavar="N")  # fmt: skip
    outliers: float = setting(0.0, "regression: fraction of training targets moved by outlier_size standard "
                                   "deviations (validation and test targets stay clean)",
                              low=0, high=1, flag="--outliers", metavar="FRACTION")  # fmt: skip
    outlier_size: float = setting(10.0, "regression: how far an outlier target is moved, in standard deviations of "
                                        "the training targets", low=0, low_open=True)  # fmt: skip

    def check(self) -> None:
        if self.name in FILE_FORMATS and not self.path:
            raise ReglabError(f"data.path is required for data.name = {self.name!r}: give the file to load")
        if self.outliers and self.targets == "classes":
            raise ReglabError(
                f"data.outliers = {self.outliers} moves regression targets; data.name = {self.name!r} has class labels"
            )
        if self.valid_fraction + self.test_fraction >= 1:
            raise ReglabError(
                f"data.valid_fraction + data.test_fraction must be < 1, "
                f"got {self.valid_fraction} + {self.test_fraction}"
            )

    @property
    def targets(self) -> str:
        """What the data set's labels are: "classes", "real" (regression) or "either" (a file)."""
        return DATASETS[self.name].targets


@dataclass(frozen=True)
class ModelConfig(Section):
    section = "model"
    family = "model"

    kind: str = setting("mlp", "model builder: mlp (Linear blocks), cnn (Conv blocks), rnn (tanh) or gru (signals, "
                               "read step by step)",
                        choices=MODEL_KINDS, flag="--model", study=True, metavar="KIND")  # fmt: skip
    width: int = setting(0, "hidden units (mlp, rnn, gru) or channels (cnn) per layer; 0: the kind's default (mlp "
                            "256, cnn 32, rnn and gru 64)",
                         low=0, flag="--width", study=True)  # fmt: skip
    depth: int = setting(2, "hidden layers (mlp), conv blocks (cnn) or recurrent layers (rnn, gru: at least 1)", low=0,
                         flag="--depth", study=True)  # fmt: skip
    activation: str = setting("relu", "activation after each hidden layer (mlp, cnn; rnn is tanh, gru has its gates)",
                              choices=ACTIVATIONS, flag="--activation")  # fmt: skip
    slope: float = setting(0.01, "leaky_relu only: the negative slope a of max(x, a·x)", low=0, high=1, high_open=True,
                           flag="--slope")  # fmt: skip
    norm: str = setting("none", "normalization in each hidden block", choices=NORMS, flag="--norm")
    groups: int = setting(8, "group norm only: number of groups (must divide the width)", low=1)
    dropout: float = setting(0.0, "drop probability p after each hidden activation",
                             low=0, high=1, high_open=True, flag="--dropout", metavar="P")  # fmt: skip
    init: str = setting("auto", "weight init; auto = He for relu/leaky_relu, Xavier for tanh/sigmoid",
                        choices=INIT_CHOICES, flag="--init")  # fmt: skip

    def check(self) -> None:
        kind = MODEL_KINDS[self.kind]
        if self.norm == "group" and self.resolved_width % self.groups:
            raise ReglabError(
                f"model.groups must divide model.width for group norm, "
                f"got groups={self.groups}, width={self.resolved_width}"
            )
        if kind.signals and self.depth < 1:
            raise ReglabError(f"model.depth must be >= 1 for model.kind = {self.kind!r} (recurrent layers), got 0")
        if kind.norms is not None and self.norm not in kind.norms:
            raise ReglabError(f"model.norm = {self.norm!r} {kind.norm_hint or f'is not one of {self.kind} norms'}")

    @property
    def resolved_width(self) -> int:
        return self.width or MODEL_KINDS[self.kind].default_width


OPTION_KEYS = {  # optimizer options that have a flag of their own
    "momentum": Key("--momentum", float, "momentum β (sgd, rmsprop)"),
    "weight_decay": Key("--weight-decay", float, "weight decay λ (coupled L2 unless --decoupled)"),
    "decoupled": Key("--decoupled", bool, "decoupled weight decay (AdamW-style) for any optimizer"),
    "clip_norm": Key("--clip-norm", float, "clip gradients to this global norm"),
    "clip_value": Key("--clip-value", float, "clip gradients elementwise to ±value"),
    "l1_proximal": Key("--l1-proximal", float, "proximal L1 step (exact zeros)"),
}


@dataclass(frozen=True)
class OptimizerConfig(Section):
    section = "optimizer"
    family = "weights"

    name: str = setting("adam", "update rule", choices=OPTIMIZERS, flag="--optimizer", study=True)
    lr: float = setting(1e-3, "learning rate η; not given: the update rule's own (Adam, SGD 1e-3; Adagrad, RMSprop "
                              "1e-2; Adadelta 1)", low=0, low_open=True, flag="--lr",
                        study=True, hint="with a learning rate of 0 the weights never change")  # fmt: skip
    options: dict[str, Any] = setting({}, "keyword options of the optimizer (momentum, betas, weight_decay, ...)",
                                      keys=OPTION_KEYS)  # fmt: skip
    decay_all: bool = setting(False, "weight decay on every parameter; default: the weights only (not biases, norms)")

    def check(self) -> None:
        object.__setattr__(self, "options", check_options(self.name, self.lr, self.options, where="optimizer.options"))


@dataclass(frozen=True)
class ScheduleConfig(Section):
    section = "schedule"
    family = "schedule"

    name: str = setting("none", "learning-rate schedule", choices=SCHEDULES, flag="--schedule")
    warmup_epochs: int = setting(0, "epochs of linear warm-up before the schedule", low=0, flag="--warmup")
    warmup_start_factor: float = setting(0.1, "warm-up starts at this fraction of lr",
                                         low=0, high=1, low_open=True)  # fmt: skip
    step_size: int = setting(30, "step: epochs between decays", low=1)
    milestones: list[int] = setting([], "multistep: epochs at which lr decays")
    gamma: float = setting(0.1, "step, multistep, exponential: decay factor", low=0, high=1, low_open=True)
    min_lr: float = setting(0.0, "cosine: final lr; plateau: lower bound", low=0)
    pct_start: float = setting(0.3, "onecycle: fraction of training spent increasing lr",
                               low=0, high=1, low_open=True, high_open=True)  # fmt: skip
    monitor: str = setting("valid_loss", "plateau: the validation metric watched", choices=MONITORS)
    patience: int = setting(5, "plateau: epochs without improvement before reducing", low=0)
    factor: float = setting(0.1, "plateau: lr multiplier on a plateau", low=0, high=1, low_open=True, high_open=True)

    def check(self) -> None:
        if self.warmup_epochs and self.name in ("plateau", "onecycle"):
            raise ReglabError(
                f"schedule.warmup_epochs cannot be combined with schedule.name = {self.name!r} (it has its own ramp)"
            )
        for i, m in enumerate(self.milestones):
            if m < self.warmup_epochs + 1:
                raise ReglabError(f"schedule.milestones[{i}] must be >= {self.warmup_epochs + 1}, got {m!r}")
        if self.milestones != sorted(set(self.milestones)):
            raise ReglabError(f"schedule.milestones must be increasing, got {self.milestones}")


@dataclass(frozen=True)
class RegularizationConfig(Section):
    section = "regularization"
    family = "weights"

    l1: float = setting(0.0, "α of α‖W‖₁ added to the loss (subgradient; see --l1-proximal)", low=0, flag="--l1")
    l2: float = setting(0.0, "α of (α/2)‖W‖²₂ added to the loss", low=0, flag="--l2")
    input_noise: float = setting(0.0, "σ of Gaussian noise added to training inputs",
                                 low=0, flag="--input-noise", family="data")  # fmt: skip
    weight_noise: float = setting(0.0, "σ of Gaussian noise on the weights during each training step",
                                  low=0, flag="--weight-noise")  # fmt: skip


@dataclass(frozen=True)
class AugmentConfig(Section):
    section = "augment"
    family = "data"

    flip: float = setting(0.0, "probability of a horizontal flip (signals and images)", low=0, high=1, flag="--flip")
    vflip: float = setting(0.0, "probability of a vertical flip (images)", low=0, high=1)
    shift: int = setting(0, "largest shift in samples/pixels along each axis (0: off)",
                         low=0, flag="--shift", needs=("axes",))  # fmt: skip
    shift_mode: str = setting("zeros", "zeros (a random crop of the padded sample) or circular",
                              choices=("zeros", "circular"))  # fmt: skip
    rotate: float = setting(0.0, "largest rotation in degrees (images)", low=0, high=180, flag="--rotate")
    scale: float = setting(0.0, "zoom factor drawn from [1 - scale, 1 + scale]", low=0, high=1, high_open=True)
    cutout: int = setting(0, "side of the Cutout box (0: off)", low=0, flag="--cutout")
    erase: float = setting(0.0, "probability of random erasing", low=0, high=1)
    erase_count: int = setting(1, "boxes erased per chosen sample", low=1)
    erase_area: list[float] = setting([0.02, 0.2], "area fraction range [low, high] of an erased box")
    p: float = setting(1.0, "probability that shift, rotate, scale and cutout touch a sample", low=0, high=1)
    extra: list[str] = setting([], "registered augmentations (or module:function paths), after the built-in ones")

    def check(self) -> None:
        if len(self.erase_area) != 2:
            raise ReglabTypeError(f"augment.erase_area must be a list [low, high], got {self.erase_area!r}")
        low = check_float("augment.erase_area[0]", self.erase_area[0], low=0, high=1, low_open=True)
        check_float("augment.erase_area[1]", self.erase_area[1], low=low, high=1)
        for i, name in enumerate(self.extra):
            AUGMENTATIONS.check(f"augment.extra[{i}]", name)

    @property
    def active(self) -> bool:
        return bool(
            self.flip
            or self.vflip
            or self.shift
            or self.rotate
            or self.scale
            or self.cutout
            or self.erase
            or self.extra
        )


@dataclass(frozen=True)
class MixingConfig(Section):
    section = "mixing"
    family = "data"

    label_smoothing: float = setting(0.0, "ε: targets (1 - ε) onehot + ε/K", low=0, high=1, high_open=True,
                                     flag="--label-smoothing", needs=("labels",))  # fmt: skip
    mixup_alpha: float = setting(0.0, "α of Beta(α, α) for Mixup (0: off)",
                                 low=0, flag="--mixup", needs=("labels",))  # fmt: skip
    cutmix_alpha: float = setting(0.0, "α of Beta(α, α) for CutMix (0: off)",
                                  low=0, flag="--cutmix", needs=("labels", "axes"))  # fmt: skip
    switch_prob: float = setting(0.5, "with both on: probability of CutMix rather than Mixup", low=0, high=1)
    prob: float = setting(1.0, "probability that a batch is mixed at all", low=0, high=1)
    mode: str = setting("batch", "batch: one λ per batch; elem: one λ per sample", choices=("batch", "elem"))


@dataclass(frozen=True)
class TrainingConfig(Section):
    section = "training"

    epochs: int = setting(100, "passes over the training set", low=1, flag="--epochs", study=True)
    seed: int = setting(0, "seeds the split, the initialization, the shuffling and dropout",
                        low=0, high=2**63 - 1, flag="--seed")  # fmt: skip
    device: str = setting("cpu", "cpu, cuda, cuda:N, mps or auto (cuda when available): where the data, the model "
                                 "and every step live", flag="--device")  # fmt: skip
    autocast: str = setting("off", "off, or bf16: every forward pass under torch.autocast in bfloat16 (products in "
                                   "bfloat16, reductions and losses in float32)", choices=("off", "bf16"),
                            flag="--autocast")  # fmt: skip
    compile: bool = setting(False, "compile the training forward and backward with torch.compile (inductor): faster "
                                   "steps after seconds of compiling", flag="--compile")  # fmt: skip
    matmul: str = setting("auto", "who multiplies the Linear layers on CPU: aten (MKL), onednn, or auto (oneDNN on "
                                  "AMD Zen 5, where MKL runs AVX2 kernels: faster; aten elsewhere)",
                          choices=KERNELS, flag="--matmul")  # fmt: skip
    loss: str = setting("cross_entropy", "cross_entropy for classes; mse (outlier-sensitive), mae (robust) or huber",
                        choices=LOSSES, flag="--loss", study=True)  # fmt: skip
    grad_norms: bool = setting(False, "record each layer's mean gradient norm per epoch (vanishing/exploding)",
                               flag="--grad-norms")  # fmt: skip
    sharpness: float = setting(0.0, "ε of Keskar's sharpness of the final weights (0: not measured; paper: 1e-3)",
                               low=0, flag="--sharpness", metavar="EPS")  # fmt: skip
    sharpness_wide: float = setting(0.0, "a second, larger ε for Keskar's sharpness (summary sharpness_wide; 0: not "
                                         "measured)", low=0, metavar="EPS")  # fmt: skip
    grad_norm_steps: bool = setting(False, "record the global gradient norm at every step (exploding gradients, "
                                           "clipping)")  # fmt: skip
    step_size: bool = setting(False, "record the optimizer's effective step, median |ΔW|/|g| at each epoch's last step",
                              flag="--step-size")  # fmt: skip
    target_loss: float = setting(0.0, "stop once the training loss is at most this (0: off): train to a low training "
                                      "loss", low=0, metavar="LOSS")  # fmt: skip

    @property
    def regression(self) -> bool:
        return self.loss != "cross_entropy"

    def check(self) -> None:
        d = self.device
        if not (d in ("cpu", "cuda", "mps", "auto") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ReglabError(f"training.device must be cpu, cuda, cuda:N, mps or auto; got {d!r}")


@dataclass(frozen=True)
class EarlyStoppingConfig(Section):
    section = "early_stopping"
    family = "stopping"

    enabled: bool = setting(False, "stop when the validation loss stops improving", flag="--early-stopping")
    monitor: str = setting("valid_loss", "the metric watched", choices=MONITORS)
    mode: str = setting("auto", "min, max, or auto: max for accuracies, min for losses",
                        choices=("auto", "min", "max"))  # fmt: skip
    patience: int = setting(10, "epochs without improvement before stopping (--patience turns early stopping on)",
                            low=0, flag="--patience")  # fmt: skip
    min_delta: float = setting(0.0, "smallest change that counts as an improvement (its sign is ignored)")
    start_from_epoch: int = setting(0, "epochs of warm-up during which no stop happens", low=0)
    restore_best: bool = setting(True, "restore the best weights at the end, stopped early or not")
