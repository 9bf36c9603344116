"""Recipe fields are declared once: the flags, their help, the ``--set`` keys and the registries'
names all come from the declarations."""

import argparse

import pytest
import torch
from conftest import make_data

from reglab.augment import AUGMENTATIONS
from reglab.data import DATASETS
from reglab.lab.build import TECHNIQUES, build
from reglab.lab.cli import build_parser
from reglab.lab.fields import family_of
from reglab.lab.flags import recipe_flags
from reglab.lab.recipe import FIELDS, SECTIONS, Recipe
from reglab.models import ACTIVATIONS, INITS, MODEL_KINDS, NORMS
from reglab.optim import OPTIMIZERS
from reglab.optim.schedules import SCHEDULES
from reglab.train.losses import LOSSES

FIELD_KEYS = {info.key for info in FIELDS}
OWN_FLAGS = {"--help", "--recipe", "--set", "--out", "--resume", "--quiet"}  # the command's own, not a field's


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_every_field_is_in_the_set_help_with_its_default():
    import re

    from reglab.lab.recipe import tomllib

    text = _subparser("train").format_help()
    for info in FIELDS:
        line = next((line for line in text.splitlines() if line.startswith(f"  {info.key}: ")), None)
        assert line is not None, f"{info.key} is not in the --set help"
        shown = re.search(r"\(default (.*?)(; |\)$)", line).group(1)
        assert tomllib.loads(f"v = {shown}")["v"] == info.default, line


@pytest.mark.parametrize("command", ["train", "study"])
def test_every_flag_maps_to_a_field_and_shows_its_default(command):
    flags = {f.key: f for f in recipe_flags()}
    for action in _options(_subparser(command)):
        own = ("config", "arms", "seeds", "workers", "threads", "stack", "list", "study", "storage", "name")
        if set(action.option_strings) & OWN_FLAGS or action.dest in own:
            continue
        key = action.dest
        section, _, rest = key.partition(".")
        assert key in FIELD_KEYS or (key.rpartition(".")[0] in FIELD_KEYS and key in flags), f"{action} is no field"
        assert section in SECTIONS and rest
        assert "default" in action.help, action.option_strings


def test_a_flag_sets_its_field():
    from reglab.lab.cli import recipe_from_args

    parser = _subparser("train")
    for f in recipe_flags():
        if f.kind == "bool":
            args = parser.parse_args([f.flag])
        elif f.key == "data.name":
            args = parser.parse_args([f.flag, "digits"])
        else:
            continue
        recipe = recipe_from_args(args)
        assert recipe.get(f.key) is True or recipe.data.name == "digits"


def test_families_come_from_the_declarations():
    assert family_of(SECTIONS, "regularization.input_noise") == "data"  # its section says weights
    assert family_of(SECTIONS, "regularization.l2") == "weights"
    assert family_of(SECTIONS, "optimizer.options.weight_decay") == "weights"
    assert family_of(SECTIONS, "model.dropout") == "model" and family_of(SECTIONS, "augment.shift") == "data"


def _small(**changes) -> Recipe:
    base = {"training.epochs": 1, "data.batch_size": 32, "model.width": 8}
    return Recipe().updated({**base, **changes})


def _trains(recipe: Recipe, own_data: bool = False) -> None:
    """``recipe`` builds and trains, on a small data set (or on its own data)."""
    trainer = build(recipe, data=None if own_data else make_data(shape=(1, 8)))
    trainer.fit()
    assert len(trainer.history) == recipe.training.epochs


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.slow
def test_every_model_kind_and_activation_is_accepted_and_built(kind, activation):
    _trains(_small(**{"model.kind": kind, "model.activation": activation}))


@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("init", ["auto", *INITS])
def test_every_norm_and_init_is_accepted_and_built(norm, init):
    _trains(_small(**{"model.kind": "cnn", "model.norm": norm, "model.init": init}))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_is_accepted_and_built(name):
    _trains(_small(**{"optimizer.name": name, "optimizer.lr": 0.01}))


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.slow
def test_every_schedule_is_accepted_and_built(name):
    from reglab.train.callbacks import LRScheduler

    extra = {"schedule.milestones": [1]} if name == "multistep" else {"schedule.step_size": 1}
    recipe = _small(**{"schedule.name": name, "training.epochs": 2, **extra})
    _trains(recipe)
    scheduled = any(isinstance(cb, LRScheduler) for cb in build(recipe, data=make_data(shape=(1, 8))).callbacks)
    assert scheduled == (name != "none")


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_is_accepted_and_built(name, tmp_path):
    import numpy as np

    if name == "cross_entropy":
        return _trains(_small())
    path = tmp_path / "r.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(60, 4)).astype(np.float32), y=rng.normal(size=60))
    _trains(_small(**{"training.loss": name, "data.name": "npz", "data.path": str(path)}), own_data=True)


@pytest.mark.parametrize("name", [n for n in DATASETS if n not in ("npz", "csv", "fashion-mnist")])
def test_every_built_in_data_set_is_accepted_and_loaded(name):
    loss = "mse" if DATASETS[name].targets == "real" else "cross_entropy"
    recipe = _small(**{"data.name": name, "training.loss": loss})
    trainer = build(recipe)
    assert len(trainer.data.x_train) > 0


def test_the_technique_table_covers_every_plug_in_kind():
    kinds = {t.kind for t in TECHNIQUES}
    assert kinds == {"batch", "loss", "callback"}
    assert [t.name for t in TECHNIQUES if t.kind == "batch"] == ["augmentation", "input noise", "label smoothing",
                                                                "mixing"]  # fmt: skip


def test_an_augmentation_named_by_import_path_runs(tmp_path):
    recipe = _small(**{"augment.extra": ["custom_parts:jitter"]})
    _trains(recipe)
    with pytest.raises(ValueError, match="augment.extra\\[0\\] = 'custom_parts:nothing'.*has no attribute"):
        _small(**{"augment.extra": ["custom_parts:nothing"]})
    assert "custom_parts:jitter" not in AUGMENTATIONS  # resolved, not registered


def test_the_registries_hold_what_the_code_implements():
    assert list(OPTIMIZERS) == ["sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamw"]
    assert torch.nn.ReLU is ACTIVATIONS["relu"]
    with pytest.raises(ValueError, match="the optimizer registry is closed"):
        OPTIMIZERS.register("lion", object)
