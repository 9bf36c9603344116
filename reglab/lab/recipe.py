"""Recipe: the single description of a run, validated when it is built.

A Recipe is a tree of frozen dataclasses, one per section (``reglab.lab.sections``), each field
declared once with its default, why, range or choices and flag. It loads from and saves to TOML,
and ``updated`` applies dotted-key changes (``--set model.width=64``). A wrong type, an
out-of-range value, NaN or an unknown name raises an error naming the field (``model.width``),
the value and what is allowed, before any data is loaded or any step is taken.

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

from reglab._files import atomic_write
from reglab.errors import InputError, MissingFileError, ReglabError, ReglabTypeError
from reglab.lab.fields import FieldInfo, Key, Spec, fields_of, spec_for
from reglab.lab.sections import (
    AugmentConfig,
    DataConfig,
    EarlyStoppingConfig,
    MixingConfig,
    ModelConfig,
    OptimizerConfig,
    RegularizationConfig,
    ScheduleConfig,
    TrainingConfig,
)
from reglab.optim import OPTIMIZERS, default_lr

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "AugmentConfig", "DataConfig", "EarlyStoppingConfig", "MixingConfig", "ModelConfig", "OptimizerConfig",
    "Recipe", "RegularizationConfig", "ScheduleConfig", "TrainingConfig", "SECTIONS", "FIELDS", "read_toml",
]  # fmt: skip


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
            if not isinstance(getattr(self, f.name), SECTIONS[f.name]):
                raise ReglabTypeError(f"{f.name} must be a {SECTIONS[f.name].__name__}, got {getattr(self, f.name)!r}")
        if self.model.norm == "batch" and self.data.batch_size == 1:
            raise ReglabError(
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
            raise ReglabError(
                f"schedule.warmup_epochs = {s.warmup_epochs} is not less than training.epochs = {epochs}: "
                "the learning rate would never reach optimizer.lr"
            )
        if s.name == "step" and s.warmup_epochs + s.step_size >= epochs:
            first = f"{s.warmup_epochs} warm-up + {s.step_size}" if s.warmup_epochs else f"{s.step_size}"
            raise ReglabError(
                f"schedule.step_size = {s.step_size}: the first decay would come after {first} epochs, {late}; "
                "use a smaller step_size"
            )
        if s.name == "multistep" and not s.milestones:
            raise ReglabError(
                "schedule.milestones is empty: multistep needs the epochs at which the learning rate decays, "
                "e.g. [50, 75]"
            )
        if s.name == "multistep" and s.milestones[0] >= epochs:
            raise ReglabError(
                f"schedule.milestones {s.milestones}: the first decay would come after {s.milestones[0]} epochs, {late}"
            )

    def _check_task(self) -> None:
        """A regression loss needs real-valued targets and no technique that needs class labels
        (the fields declared ``needs=("labels",)``); cross-entropy needs class labels."""
        loss, name, targets = self.training.loss, self.data.name, self.data.targets
        if not self.training.regression:
            if targets == "real":
                raise ReglabError(
                    f"data.name = {name!r} has real-valued targets: set training.loss to 'mse', 'mae' or 'huber'"
                )
            return
        if targets == "classes":
            raise ReglabError(
                f"training.loss = {loss!r} is a regression loss, but data.name = {name!r} has class labels; "
                "use cross_entropy"
            )
        for info in FIELDS:
            value = self.get(info.key)
            if "labels" in info.spec.needs and value != info.default:
                raise ReglabError(
                    f"{info.key} = {value} needs class labels; training.loss = {loss!r} is a regression loss"
                )
        for where, monitor in (("early_stopping", self.early_stopping.monitor), ("schedule", self.schedule.monitor)):
            if monitor.endswith("_acc"):
                raise ReglabError(
                    f"{where}.monitor = {monitor!r}: a regression run has no accuracy; monitor valid_loss or train_loss"
                )

    def get(self, key: str) -> Any:
        """The value at a dotted key: ``recipe.get("model.width")``, ``"optimizer.options.betas"``
        (``None`` for an option that is not set)."""
        value: Any = self
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else getattr(value, part)
        return value

    # -- dict / TOML -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], table: str = "") -> Recipe:
        """Build from nested dicts (as read from TOML); unknown sections or fields raise.
        ``table`` is where the recipe sits in its file (a study file's ``base``), for messages."""
        if not isinstance(d, dict):
            raise ReglabTypeError(f"a recipe must be a table, got {d!r}")
        for key in set(d) - set(SECTIONS):  # a field written outside its table: say which table holds it
            home = [name for name, section in SECTIONS.items() if key in {f.name for f in dataclasses.fields(section)}]
            if home:
                where = f"{table}.{home[0]}" if table else home[0]
                raise ReglabError(f"{key} is a field of [{where}]: write it under [{where}] (as {home[0]}.{key})")
        _reject_unknown("recipe", d, SECTIONS)
        parts = {}
        for name, section in SECTIONS.items():
            values = d.get(name, {})
            if not isinstance(values, dict):
                raise ReglabTypeError(f"{name} must be a table, got {values!r}")
            _reject_unknown(name, values, {f.name for f in dataclasses.fields(section)})
            if name == "optimizer" and "lr" not in values and values.get("name") in OPTIMIZERS:
                values = {**values, "lr": default_lr(values["name"])}  # no lr given: the rule's own
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
        atomic_write(path, self.to_toml(header))

    def updated(self, changes: dict[str, Any]) -> Recipe:
        """A new, re-validated Recipe with dotted-key changes, e.g. ``{"model.width": 64}``
        (a whole section as a table works too: ``{"model": {"width": 64}}``). A change of
        ``optimizer.name`` without ``optimizer.lr`` gives the new rule its own default lr when
        the old one ran at its default (``--optimizer adadelta`` runs at η = 1)."""
        if not isinstance(changes, dict):
            raise ReglabTypeError(
                "changes must be a dict of recipe keys to values, e.g. {'model.width': 64}; "
                f"got {type(changes).__name__}"
            )
        d = self.to_dict()
        flat = {}
        for key, value in changes.items():
            if not isinstance(key, str):
                raise ReglabTypeError(f"recipe keys are strings such as 'model.width'; got {key!r}")
            if key in d and isinstance(value, dict):  # {"model": {"width": 64}}
                flat.update({f"{key}.{name}": v for name, v in value.items()})
            else:
                flat[key] = value
        for key, value in flat.items():
            section, _, name = key.partition(".")
            if section not in d or not name:
                raise ReglabError(f"unknown recipe key {key!r}; keys look like section.field, sections: {', '.join(d)}")
            target = d[section]
            *parents, leaf = name.split(".")
            for p in parents:  # e.g. optimizer.options.betas: only a table field has fields
                if not isinstance(target.get(p), dict):
                    raise ReglabError(f"unknown recipe key {key!r}: {p} in {section} is not a table")
                target = target[p]
            target[leaf] = value
        old = self.optimizer
        if "optimizer.name" in flat and "optimizer.lr" not in flat and old.lr == default_lr(old.name):
            d["optimizer"].pop("lr")  # the lr was the old rule's default, not given: the new rule's own
        return Recipe.from_dict(d)


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing file or bad TOML raises an error naming ``what`` and the path."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        error: InputError = MissingFileError(f"{what} not found: {path}")
    except tomllib.TOMLDecodeError as e:
        error = ReglabError(f"{what} {path} is not valid TOML: {e}")
    except UnicodeDecodeError as e:
        error = ReglabError(f"{what} {path} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8")
    except IsADirectoryError:
        error = ReglabError(f"{what} {path} is a folder; give the TOML file in it")
    except PermissionError:
        error = ReglabError(f"{what} {path} cannot be read: permission denied")
    error.file = str(path)
    raise error


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Recipe)}  # type: ignore[misc]
FIELDS: list[FieldInfo] = fields_of(SECTIONS)  # every field, in declaration order: the CLI's and the docs' list


def _reject_unknown(where: str, d: dict[str, Any], known) -> None:
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ReglabError(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in {where}; "
            f"known: {', '.join(sorted(known))}"
        )


def field_spec(key: str) -> Spec | Key | None:
    """The declaration of a dotted recipe key: a field's, or a flagged key of a table field."""
    return spec_for(SECTIONS, key)
