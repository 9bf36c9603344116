"""Recipe: the single description of a run, validated when it is built.

A Recipe is a tree of frozen dataclasses. It loads from and saves to TOML, and every field is
checked in ``__post_init__``: a wrong type, an out-of-range value, NaN or an unknown name raises
``TypeError``/``ValueError`` naming the field (``model.width``), the value and what is allowed,
before any data is loaded or any step is taken.

>>> r = Recipe.from_dict({"model": {"width": 128}, "training": {"epochs": 5}})
>>> r.model.width, r.optimizer.name
(128, 'adam')
>>> r.updated({"optimizer.lr": 0.01}).optimizer.lr
0.01
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from reglab._checks import check_bool, check_choice, check_float, check_int, check_str

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATASETS = ("mnist1d", "digits", "fashion-mnist", "diabetes", "npz", "csv")
LOSSES = ("cross_entropy", "mse", "mae")  # classification; regression L2 and L1 (TECHNIQUES.md section 12)
MODEL_KINDS = ("mlp", "cnn")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
NORMS = ("none", "batch", "layer", "group", "instance")
INITS = ("auto", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal")
MONITORS = ("valid_loss", "valid_acc", "train_loss", "train_acc")


def _fix(obj: Any, name: str, value: Any) -> None:
    """Store a normalized value (e.g. int -> float) on a frozen dataclass."""
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist1d"  # MNIST-1D: small, hard enough for an MLP to overfit within seconds
    path: str = ""  # file (.npz/.csv) or folder (fashion-mnist IDX files); "" = the default place
    valid_fraction: float = 0.2  # carved from the training set, by seed
    test_fraction: float = 0.2  # only for data without its own test split (digits, diabetes, npz, csv)
    batch_size: int = 100  # >= the training-set size gives full-batch gradient descent
    train_size: int = (
        0  # training samples used: 0 = the whole training split; N = a random N of it (by seed, nested in N)
    )
    label_column: str = (
        "label"  # csv only: the column holding the labels (integers 0..K-1 or class names) or the target
    )

    def __post_init__(self) -> None:
        check_choice("data.name", self.name, DATASETS)
        check_str("data.path", self.path)
        if self.name in ("npz", "csv") and not self.path:
            raise ValueError(f"data.path is required for data.name = {self.name!r}: give the file to load")
        _fix(
            self,
            "valid_fraction",
            check_float("data.valid_fraction", self.valid_fraction, low=0, high=1, low_open=True, high_open=True),
        )
        _fix(
            self,
            "test_fraction",
            check_float("data.test_fraction", self.test_fraction, low=0, high=1, low_open=True, high_open=True),
        )
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"data.valid_fraction + data.test_fraction must be < 1, got {self.valid_fraction} + {self.test_fraction}"
            )
        check_int("data.batch_size", self.batch_size, low=1)
        check_int("data.train_size", self.train_size, low=0)
        check_str("data.label_column", self.label_column)


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"
    width: int = 0  # hidden units (mlp) or channels (cnn) per layer; 0 = the kind's default (256 / 32)
    depth: int = 2  # hidden layers (mlp) or conv blocks (cnn)
    activation: str = "relu"
    norm: str = "none"
    groups: int = 8  # group norm only: number of groups (must divide width)
    dropout: float = 0.0  # drop probability after each hidden activation
    init: str = "auto"  # auto = He for relu/leaky_relu, Xavier for tanh/sigmoid

    def __post_init__(self) -> None:
        check_choice("model.kind", self.kind, MODEL_KINDS)
        check_int("model.width", self.width, low=0)
        check_int("model.depth", self.depth, low=0)
        check_choice("model.activation", self.activation, ACTIVATIONS)
        check_choice("model.norm", self.norm, NORMS)
        check_int("model.groups", self.groups, low=1)
        if self.norm == "group" and self.resolved_width % self.groups:
            raise ValueError(
                f"model.groups must divide model.width for group norm, got groups={self.groups}, width={self.resolved_width}"
            )
        if self.norm == "instance" and self.kind == "mlp":
            raise ValueError(
                "model.norm = 'instance' needs spatial dimensions: use model.kind = 'cnn', or 'layer' norm for an mlp"
            )
        _fix(self, "dropout", check_float("model.dropout", self.dropout, low=0, high=1, high_open=True))
        check_choice("model.init", self.init, INITS)

    @property
    def resolved_width(self) -> int:
        from reglab.models import DEFAULT_WIDTH

        return self.width or DEFAULT_WIDTH[self.kind]


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adam"
    lr: float = 1e-3  # Adam's usual step size
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the optimizer
    decay_all: bool = False  # weight decay on every parameter; default: not biases nor norms

    def __post_init__(self) -> None:
        from reglab.optim import OPTIMIZERS, validate_options

        check_choice("optimizer.name", self.name, OPTIMIZERS)
        _fix(self, "lr", check_float("optimizer.lr", self.lr, low=0))
        check_bool("optimizer.decay_all", self.decay_all)
        if not isinstance(self.options, dict):
            raise TypeError(f"optimizer.options must be a table, got {self.options!r}")
        _fix(self, "options", validate_options(self.name, self.lr, dict(self.options)))


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "none"  # none, step, multistep, exponential, cosine, onecycle, plateau
    warmup_epochs: int = 0  # linear warm-up before the schedule
    warmup_start_factor: float = 0.1  # warm-up starts at this fraction of lr
    step_size: int = 30  # step: epochs between decays
    milestones: list[int] = field(default_factory=list)  # multistep: epochs at which lr decays
    gamma: float = 0.1  # step, multistep, exponential: decay factor
    min_lr: float = 0.0  # cosine: final lr; plateau: lower bound
    pct_start: float = 0.3  # onecycle: fraction of training spent increasing lr
    monitor: str = "valid_loss"  # plateau: the validation metric watched
    patience: int = 5  # plateau: epochs without improvement before reducing
    factor: float = 0.1  # plateau: lr multiplier on a plateau

    def __post_init__(self) -> None:
        from reglab.optim.schedules import SCHEDULES

        check_choice("schedule.name", self.name, SCHEDULES)
        check_int("schedule.warmup_epochs", self.warmup_epochs, low=0)
        if self.warmup_epochs and self.name in ("plateau", "onecycle"):
            raise ValueError(
                f"schedule.warmup_epochs cannot be combined with schedule.name = {self.name!r} (it has its own ramp)"
            )
        _fix(
            self,
            "warmup_start_factor",
            check_float("schedule.warmup_start_factor", self.warmup_start_factor, low=0, high=1, low_open=True),
        )
        check_int("schedule.step_size", self.step_size, low=1)
        if not isinstance(self.milestones, list):
            raise TypeError(f"schedule.milestones must be a list of epochs, got {self.milestones!r}")
        for i, m in enumerate(self.milestones):
            check_int(f"schedule.milestones[{i}]", m, low=self.warmup_epochs + 1)
        if self.milestones != sorted(set(self.milestones)):
            raise ValueError(f"schedule.milestones must be increasing, got {self.milestones}")
        _fix(self, "gamma", check_float("schedule.gamma", self.gamma, low=0, high=1, low_open=True))
        _fix(self, "min_lr", check_float("schedule.min_lr", self.min_lr, low=0))
        _fix(
            self,
            "pct_start",
            check_float("schedule.pct_start", self.pct_start, low=0, high=1, low_open=True, high_open=True),
        )
        check_choice("schedule.monitor", self.monitor, MONITORS)
        check_int("schedule.patience", self.patience, low=0)
        _fix(self, "factor", check_float("schedule.factor", self.factor, low=0, high=1, low_open=True, high_open=True))


@dataclass(frozen=True)
class RegularizationConfig:
    l1: float = 0.0  # α of α‖W‖₁ added to the loss (subgradient; see optimizer option l1_proximal)
    l2: float = 0.0  # α of (α/2)‖W‖²₂ added to the loss
    input_noise: float = 0.0  # σ of Gaussian noise added to training inputs
    weight_noise: float = 0.0  # σ of Gaussian noise on the weights during each training step

    def __post_init__(self) -> None:
        for name in ("l1", "l2", "input_noise", "weight_noise"):
            _fix(self, name, check_float(f"regularization.{name}", getattr(self, name), low=0))


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.0  # probability of a horizontal flip (signals and images)
    vflip: float = 0.0  # probability of a vertical flip (images)
    shift: int = 0  # largest shift in samples/pixels along each axis (0: off)
    shift_mode: str = "zeros"  # zeros (a random crop of the padded sample) or circular
    rotate: float = 0.0  # largest rotation in degrees (images)
    scale: float = 0.0  # zoom factor drawn from [1 - scale, 1 + scale]
    cutout: int = 0  # side of the Cutout box (0: off)
    erase: float = 0.0  # probability of random erasing
    erase_count: int = 1  # boxes erased per chosen sample
    erase_area: list[float] = field(default_factory=lambda: [0.02, 0.2])  # area fraction range
    p: float = 1.0  # probability that shift, rotate, scale and cutout touch a sample

    def __post_init__(self) -> None:
        for name in ("flip", "vflip", "erase", "p"):
            _fix(self, name, check_float(f"augment.{name}", getattr(self, name), low=0, high=1))
        check_int("augment.shift", self.shift, low=0)
        check_choice("augment.shift_mode", self.shift_mode, ("zeros", "circular"))
        _fix(self, "rotate", check_float("augment.rotate", self.rotate, low=0, high=180))
        _fix(self, "scale", check_float("augment.scale", self.scale, low=0, high=1, high_open=True))
        check_int("augment.cutout", self.cutout, low=0)
        check_int("augment.erase_count", self.erase_count, low=1)
        if not isinstance(self.erase_area, list) or len(self.erase_area) != 2:
            raise TypeError(f"augment.erase_area must be a list [low, high], got {self.erase_area!r}")
        low = check_float("augment.erase_area[0]", self.erase_area[0], low=0, high=1, low_open=True)
        check_float("augment.erase_area[1]", self.erase_area[1], low=low, high=1)

    @property
    def active(self) -> bool:
        return bool(self.flip or self.vflip or self.shift or self.rotate or self.scale or self.cutout or self.erase)


@dataclass(frozen=True)
class MixingConfig:
    label_smoothing: float = 0.0  # ε: targets (1 - ε) onehot + ε/K
    mixup_alpha: float = 0.0  # α of Beta(α, α) for Mixup (0: off)
    cutmix_alpha: float = 0.0  # α of Beta(α, α) for CutMix (0: off)
    switch_prob: float = 0.5  # with both on: probability of CutMix rather than Mixup
    prob: float = 1.0  # probability that a batch is mixed at all
    mode: str = "batch"  # batch: one λ per batch; elem: one λ per sample

    def __post_init__(self) -> None:
        _fix(
            self,
            "label_smoothing",
            check_float("mixing.label_smoothing", self.label_smoothing, low=0, high=1, high_open=True),
        )
        _fix(self, "mixup_alpha", check_float("mixing.mixup_alpha", self.mixup_alpha, low=0))
        _fix(self, "cutmix_alpha", check_float("mixing.cutmix_alpha", self.cutmix_alpha, low=0))
        _fix(self, "switch_prob", check_float("mixing.switch_prob", self.switch_prob, low=0, high=1))
        _fix(self, "prob", check_float("mixing.prob", self.prob, low=0, high=1))
        check_choice("mixing.mode", self.mode, ("batch", "elem"))


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 100
    seed: int = 0  # seeds the split, the initialization, the shuffling and dropout
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (cuda when available)
    loss: str = "cross_entropy"  # classification; mse (outlier-sensitive) or mae (robust) for regression
    grad_norms: bool = False  # record each layer's mean gradient norm per epoch (grad_norm_1 = input layer)
    sharpness: float = (
        0.0  # ε of Keskar's sharpness of the final weights on the training loss (0: not measured; paper: 1e-3)
    )

    @property
    def regression(self) -> bool:
        return self.loss != "cross_entropy"

    def __post_init__(self) -> None:
        check_int("training.epochs", self.epochs, low=1)
        check_int("training.seed", self.seed, low=0, high=2**63 - 1)
        check_str("training.device", self.device)
        if not (
            self.device in ("cpu", "cuda", "auto") or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        ):
            raise ValueError(f"training.device must be cpu, cuda, cuda:N or auto; got {self.device!r}")
        check_choice("training.loss", self.loss, LOSSES)
        check_bool("training.grad_norms", self.grad_norms)
        _fix(self, "sharpness", check_float("training.sharpness", self.sharpness, low=0))


@dataclass(frozen=True)
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: str = "valid_loss"
    mode: str = "auto"  # min, max, or auto: max for accuracies, min for losses
    patience: int = 10  # epochs without improvement before stopping
    min_delta: float = 0.0  # smallest change that counts as an improvement (its sign is ignored)
    start_from_epoch: int = 0  # epochs of warm-up during which no stop happens
    restore_best: bool = True  # restore the best weights at the end, stopped early or not

    def __post_init__(self) -> None:
        check_bool("early_stopping.enabled", self.enabled)
        check_choice("early_stopping.monitor", self.monitor, MONITORS)
        check_choice("early_stopping.mode", self.mode, ("auto", "min", "max"))
        check_int("early_stopping.patience", self.patience, low=0)
        _fix(self, "min_delta", check_float("early_stopping.min_delta", self.min_delta))
        check_int("early_stopping.start_from_epoch", self.start_from_epoch, low=0)
        check_bool("early_stopping.restore_best", self.restore_best)


@dataclass(frozen=True)
class Recipe:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not isinstance(getattr(self, f.name), _SECTIONS[f.name]):
                raise TypeError(f"{f.name} must be a {_SECTIONS[f.name].__name__}, got {getattr(self, f.name)!r}")
        if self.model.norm == "batch" and self.data.batch_size == 1:
            raise ValueError(
                "data.batch_size = 1 with model.norm = 'batch': the batch variance is 0 and batch norm "
                "cannot normalize; use a batch size >= 2 or another norm (layer, group)"
            )
        self._check_task()
        self._check_schedule()

    def _check_schedule(self) -> None:
        """The schedule must act within the run: epoch ``e`` trains at the rate set after
        ``e − 1`` scheduler steps, so a change at step ``t`` is felt only if ``t < epochs``."""
        s, epochs = self.schedule, self.training.epochs
        late = f"not before the end of the run (training.epochs = {epochs})"
        if s.warmup_epochs >= epochs:
            raise ValueError(
                f"schedule.warmup_epochs = {s.warmup_epochs} is not less than training.epochs = {epochs}: the learning rate would never reach optimizer.lr"
            )
        if s.name == "step" and s.warmup_epochs + s.step_size >= epochs:
            first = f"{s.warmup_epochs} warm-up + {s.step_size}" if s.warmup_epochs else f"{s.step_size}"
            raise ValueError(
                f"schedule.step_size = {s.step_size}: the first decay would come after {first} epochs, {late}; use a smaller step_size"
            )
        if s.name == "multistep" and not s.milestones:
            raise ValueError(
                "schedule.milestones is empty: multistep needs the epochs at which the learning rate decays, e.g. [50, 75]"
            )
        if s.name == "multistep" and s.milestones[0] >= epochs:
            raise ValueError(
                f"schedule.milestones {s.milestones}: the first decay would come after {s.milestones[0]} epochs, {late}"
            )

    def _check_task(self) -> None:
        """A regression loss needs real-valued targets and no label-side technique; cross-entropy
        needs class labels."""
        from reglab.data import REGRESSION_SETS

        loss, name = self.training.loss, self.data.name
        if not self.training.regression:
            if name in REGRESSION_SETS:
                raise ValueError(f"data.name = {name!r} has real-valued targets: set training.loss to 'mse' or 'mae'")
            return
        if name not in REGRESSION_SETS + ("npz", "csv"):
            raise ValueError(
                f"training.loss = {loss!r} is a regression loss, but data.name = {name!r} has class labels; use cross_entropy"
            )
        m = self.mixing
        for field_name in ("label_smoothing", "mixup_alpha", "cutmix_alpha"):
            if getattr(m, field_name):
                raise ValueError(
                    f"mixing.{field_name} = {getattr(m, field_name)} needs class labels; training.loss = {loss!r} is a regression loss"
                )
        for where, monitor in (("early_stopping", self.early_stopping.monitor), ("schedule", self.schedule.monitor)):
            if monitor.endswith("_acc"):
                raise ValueError(
                    f"{where}.monitor = {monitor!r}: a regression run has no accuracy; monitor valid_loss or train_loss"
                )

    # -- dict / TOML -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], table: str = "") -> Recipe:
        """Build from nested dicts (as read from TOML); unknown sections or fields raise.
        ``table`` is where the recipe sits in its file (a study file's ``base``), for messages."""
        if not isinstance(d, dict):
            raise TypeError(f"a recipe must be a table, got {d!r}")
        for key in set(d) - set(_SECTIONS):  # a field written outside its table: say which table holds it
            home = [name for name, section in _SECTIONS.items() if key in {f.name for f in dataclasses.fields(section)}]
            if home:
                where = f"{table}.{home[0]}" if table else home[0]
                raise ValueError(f"{key} is a field of [{where}]: write it under [{where}] (as {home[0]}.{key})")
        _reject_unknown("recipe", d, _SECTIONS)
        parts = {}
        for name, section in _SECTIONS.items():
            values = d.get(name, {})
            if not isinstance(values, dict):
                raise TypeError(f"{name} must be a table, got {values!r}")
            _reject_unknown(name, values, {f.name for f in dataclasses.fields(section)})
            parts[name] = section(**values)
        return cls(**parts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        return cls.from_dict(read_toml(path, "recipe file"))

    def to_toml(self, header: str = "") -> str:
        body = tomli_w.dumps(self.to_dict())
        return "".join(f"# {line}\n" for line in header.splitlines()) + body

    def save(self, path: str | Path, header: str = "") -> None:
        """Write the recipe as TOML (folders made as needed; replaced whole, never half-written)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_toml(header))
        tmp.replace(path)

    def updated(self, changes: dict[str, Any]) -> Recipe:
        """A new, re-validated Recipe with dotted-key changes, e.g. ``{"model.width": 64}``
        (a whole section as a table works too: ``{"model": {"width": 64}}``)."""
        if not isinstance(changes, dict):
            raise TypeError(
                f"changes must be a dict of recipe keys to values, e.g. {{'model.width': 64}}; got {type(changes).__name__}"
            )
        d = self.to_dict()
        flat = {}
        for key, value in changes.items():
            if not isinstance(key, str):
                raise TypeError(f"recipe keys are strings such as 'model.width'; got {key!r}")
            if key in d and isinstance(value, dict):  # {"model": {"width": 64}}
                flat.update({f"{key}.{name}": v for name, v in value.items()})
            else:
                flat[key] = value
        for key, value in flat.items():
            section, _, name = key.partition(".")
            if section not in d or not name:
                raise ValueError(f"unknown recipe key {key!r}; keys look like section.field, sections: {', '.join(d)}")
            target = d[section]
            *parents, leaf = name.split(".")
            for p in parents:  # e.g. optimizer.options.betas: only a table field has fields
                if not isinstance(target.get(p), dict):
                    raise ValueError(f"unknown recipe key {key!r}: {p} in {section} is not a table")
                target = target[p]
            target[leaf] = value
        return Recipe.from_dict(d)


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing file or bad TOML raises an error naming ``what`` and the path."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{what} {path} is not valid TOML: {e}") from None


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "schedule": ScheduleConfig,
    "regularization": RegularizationConfig,
    "augment": AugmentConfig,
    "mixing": MixingConfig,
    "training": TrainingConfig,
    "early_stopping": EarlyStoppingConfig,
}


def _reject_unknown(where: str, d: dict[str, Any], known) -> None:
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in {where}; known: {', '.join(sorted(known))}"
        )
