import math

import pytest

from reglab.lab.recipe import Recipe


def test_defaults_are_the_overfitting_baseline():
    r = Recipe()
    assert (r.data.name, r.data.batch_size, r.model.kind, r.model.resolved_width, r.model.depth) == (
        "mnist1d",
        100,
        "mlp",
        256,
        2,
    )
    assert (r.optimizer.name, r.optimizer.lr, r.training.epochs) == ("adam", 1e-3, 100)
    assert not r.early_stopping.enabled


def test_toml_round_trip(tmp_path):
    r = Recipe.from_dict(
        {
            "data": {"name": "digits", "batch_size": 32},
            "model": {"kind": "cnn", "width": 16, "norm": "group", "groups": 4, "dropout": 0.25},
            "optimizer": {"name": "sgd", "lr": 0.1, "options": {"momentum": 0.9, "nesterov": True}},
            "early_stopping": {"enabled": True, "patience": 3, "min_delta": -0.01},
        }
    )
    r.save(tmp_path / "r.toml", header="a comment\nsecond line")
    text = (tmp_path / "r.toml").read_text()
    assert text.startswith("# a comment\n# second line\n")
    assert Recipe.load(tmp_path / "r.toml") == r


def test_ints_are_accepted_for_floats():
    r = Recipe.from_dict({"optimizer": {"lr": 1}, "model": {"dropout": 0}})
    assert isinstance(r.optimizer.lr, float) and isinstance(r.model.dropout, float)


def test_updated_revalidates_and_is_new():
    r = Recipe()
    r2 = r.updated({"model.width": 64, "optimizer.options.betas": [0.8, 0.9]})
    assert r.model.width == 0 and r2.model.width == 64 and r2.optimizer.options["betas"] == [0.8, 0.9]
    with pytest.raises(ValueError, match="model.width"):
        r.updated({"model.width": -1})
    with pytest.raises(ValueError, match="unknown recipe key"):
        r.updated({"width": 3})


def test_updated_takes_whole_sections_and_refuses_what_is_no_key():
    r = Recipe()
    by_table = r.updated({"model": {"width": 64}, "optimizer": {"name": "sgd", "options": {"momentum": 0.9}}})
    assert by_table == r.updated({"model.width": 64, "optimizer.name": "sgd", "optimizer.options.momentum": 0.9})
    with pytest.raises(ValueError, match="unknown field widht in model"):
        r.updated({"model": {"widht": 3}})
    with pytest.raises(ValueError, match="unknown recipe key 'model.width.x': width in model is not a table"):
        r.updated({"model.width.x": 3})  # it raised TypeError: 'int' object does not support item assignment
    with pytest.raises(TypeError, match="changes must be a dict of recipe keys to values"):
        r.updated([("model.width", 3)])


def test_a_field_outside_its_table_names_the_table(tmp_path):
    (tmp_path / "flat.toml").write_text("epochs = 3\n")
    with pytest.raises(
        ValueError, match=r"epochs is a field of \[training\]: write it under \[training\] \(as training.epochs\)"
    ):
        Recipe.load(tmp_path / "flat.toml")


def test_save_makes_the_folder_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "new" / "deeper" / "r.toml"
    Recipe().save(path)
    assert Recipe.load(path) == Recipe() and [p.name for p in path.parent.iterdir()] == ["r.toml"]


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"model": {"width": -3}}, ValueError, ["model.width", "-3"]),
        ({"model": {"width": 2.5}}, TypeError, ["model.width", "2.5"]),
        ({"model": {"width": True}}, TypeError, ["model.width"]),
        ({"model": {"dropout": 1.0}}, ValueError, ["model.dropout", "[0, 1)"]),
        ({"model": {"dropout": math.nan}}, ValueError, ["model.dropout", "nan"]),
        ({"model": {"activation": "swish"}}, ValueError, ["model.activation", "swish", "relu, sigmoid, tanh"]),
        ({"model": {"kind": "mlp", "norm": "instance"}}, ValueError, ["instance"]),
        ({"model": {"norm": "group", "width": 30, "groups": 8}}, ValueError, ["model.groups"]),
        ({"model": {"widht": 3}}, ValueError, ["widht", "known", "width"]),
        ({"data": {"name": "cifar"}}, ValueError, ["data.name", "cifar", "digits, fashion-mnist"]),
        ({"data": {"batch_size": 0}}, ValueError, ["data.batch_size", "0"]),
        ({"data": {"valid_fraction": 1.5}}, ValueError, ["data.valid_fraction", "1.5"]),
        ({"data": {"name": "npz"}}, ValueError, ["data.path"]),
        ({"optimizer": {"lr": -0.1}}, ValueError, ["optimizer.lr", "-0.1"]),
        ({"optimizer": {"lr": "fast"}}, TypeError, ["optimizer.lr", "fast"]),
        ({"optimizer": {"lr": math.inf}}, ValueError, ["optimizer.lr"]),
        ({"optimizer": {"name": "lion"}}, ValueError, ["optimizer.name", "lion", "adam"]),
        ({"optimizer": {"options": {"momentum": 0.9}}}, ValueError, ["momentum", "adam"]),
        ({"optimizer": {"options": {"betas": [1.5, 0.9]}}}, ValueError, ["beta", "1.5"]),
        ({"training": {"epochs": 0}}, ValueError, ["training.epochs"]),
        ({"training": {"seed": -1}}, ValueError, ["training.seed"]),
        ({"training": {"device": "tpu"}}, ValueError, ["training.device", "tpu"]),
        ({"early_stopping": {"patience": -1}}, ValueError, ["early_stopping.patience"]),
        ({"early_stopping": {"monitor": "val_loss"}}, ValueError, ["early_stopping.monitor", "valid_loss"]),
        ({"early_stopping": {"enabled": "yes"}}, TypeError, ["early_stopping.enabled"]),
        ({"model": {"norm": "batch"}, "data": {"batch_size": 1}}, ValueError, ["batch norm", "batch_size"]),
        ({"trainig": {}}, ValueError, ["trainig", "training"]),
        ({"regularization": {"l2": -1.0}}, ValueError, ["regularization.l2", "-1.0"]),
        ({"regularization": {"input_noise": "lots"}}, TypeError, ["regularization.input_noise"]),
        ({"augment": {"flip": 1.5}}, ValueError, ["augment.flip", "1.5"]),
        ({"augment": {"shift": -2}}, ValueError, ["augment.shift"]),
        ({"augment": {"erase_area": [0.0, 0.5]}}, ValueError, ["augment.erase_area[0]"]),
        ({"augment": {"erase_area": [0.3, 1.5]}}, ValueError, ["augment.erase_area[1]"]),
        ({"mixing": {"label_smoothing": 1.0}}, ValueError, ["mixing.label_smoothing"]),
        ({"mixing": {"mixup_alpha": -0.2}}, ValueError, ["mixing.mixup_alpha"]),
        ({"mixing": {"mode": "pairs"}}, ValueError, ["mixing.mode", "batch, elem"]),
        ({"training": {"loss": "l2"}}, ValueError, ["training.loss", "l2", "cross_entropy, huber, mae, mse"]),
        ({"training": {"loss": "mse"}}, ValueError, ["regression loss", "'mnist1d' has class labels"]),
        ({"data": {"name": "diabetes"}}, ValueError, ["'diabetes' has real-valued targets", "mse"]),
        (
            {"data": {"name": "diabetes"}, "training": {"loss": "mae"}, "mixing": {"mixup_alpha": 0.2}},
            ValueError,
            ["mixing.mixup_alpha", "class labels"],
        ),
        (
            {"data": {"name": "diabetes"}, "training": {"loss": "mse"}, "mixing": {"label_smoothing": 0.1}},
            ValueError,
            ["mixing.label_smoothing"],
        ),
        (
            {"data": {"name": "diabetes"}, "training": {"loss": "mse"}, "early_stopping": {"monitor": "valid_acc"}},
            ValueError,
            ["early_stopping.monitor", "no accuracy"],
        ),
        (
            {
                "data": {"name": "diabetes"},
                "training": {"loss": "mse"},
                "schedule": {"name": "plateau", "monitor": "train_acc"},
            },
            ValueError,
            ["schedule.monitor", "no accuracy"],
        ),
    ],
)
def test_bad_values_name_field_and_value(change, error, words):
    with pytest.raises(error) as info:
        Recipe.from_dict(change)
    for word in words:
        assert word in str(info.value)


def test_bad_toml_file(tmp_path):
    (tmp_path / "bad.toml").write_text("[model\nwidth = 3")
    with pytest.raises(ValueError, match="not valid TOML"):
        Recipe.load(tmp_path / "bad.toml")
    with pytest.raises(FileNotFoundError, match="recipe file not found"):
        Recipe.load(tmp_path / "missing.toml")


def test_weight_decay_spares_biases_and_norms_unless_decay_all():
    from reglab.lab.build import build

    base = {"data": {"name": "digits"}, "model": {"width": 8, "norm": "layer"}, "training": {"epochs": 1}}
    trainer = build(Recipe.from_dict({**base, "optimizer": {"name": "adamw"}}))
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    everything = build(Recipe.from_dict({**base, "optimizer": {"name": "adamw", "decay_all": True}}))
    assert len(everything.optimizer.param_groups) == 1
    plain = build(Recipe.from_dict(base))  # adam, no decay: one group
    assert len(plain.optimizer.param_groups) == 1
