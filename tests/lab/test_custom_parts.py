"""A user's own model, data set and arm run in ``reglab train`` and ``reglab study`` like built-ins."""

import math

import numpy as np
import pytest
import torch

import reglab
from reglab.data import DATASETS
from reglab.lab.recipe import Recipe
from reglab.lab.study import make_plan, run_study
from reglab.lab.study.plan import ARMS
from reglab.models import MODEL_KINDS


def tiny(input_shape, num_outputs, config):
    """A one-hidden-layer model that reads the recipe's width and dropout."""
    width = config.resolved_width
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(math.prod(input_shape), width), torch.nn.ReLU(),
        torch.nn.Dropout(config.dropout), torch.nn.Linear(width, num_outputs),
    )  # fmt: skip


def blobs(config, regression):
    """Two Gaussian blobs in 6 dimensions; no test split (carved by data.test_fraction)."""
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    x = rng.normal(size=(200, 6)).astype(np.float32) + y[:, None]
    return x, y, None, None


@pytest.mark.slow
def test_a_registered_model_and_data_set_run_a_two_arm_study(tmp_path):
    reglab.register_model("tiny", tiny, default_width=12)
    reglab.register_dataset("blobs", blobs)
    try:
        base = Recipe().updated(
            {"model.kind": "tiny", "data.name": "blobs", "training.epochs": 3, "data.batch_size": 20}
        )
        assert base.model.resolved_width == 12
        plan = make_plan(base, arms=["baseline", "dropout"], seeds=2)
        board = run_study(plan, tmp_path / "study")
        assert sorted(e["arm"] for e in board) == ["baseline", "dropout"] and all(e["seeds"] == 2 for e in board)
        assert (tmp_path / "study" / "report.html").exists()
        result = reglab.train_recipe(base)
        assert isinstance(result.model[1], torch.nn.Linear) and result.model[1].out_features == 12
    finally:
        MODEL_KINDS.unregister("tiny")
        DATASETS.unregister("blobs")


@pytest.mark.slow
def test_a_model_named_by_import_path_is_recorded_and_rerun(tmp_path, capsys):
    from reglab.lab.cli import main

    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--model", "custom_parts:linear", "--epochs", "2", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    saved = Recipe.load(out / "recipe.toml")
    assert saved.model.kind == "custom_parts:linear"
    assert main(["train", "--recipe", str(out / "recipe.toml"), "--quiet", "--out", str(tmp_path / "again")]) == 0
    first = (out / "history.json").read_text()
    assert (tmp_path / "again" / "history.json").read_text().count('"train_loss"') == first.count('"train_loss"') == 2


def test_a_registered_arm_joins_the_default_arms():
    reglab.register_arm("wide", "twice the width", {"model.width": 512})
    try:
        plan = make_plan(Recipe().updated({"data.name": "digits", "training.epochs": 2}))
        assert "wide" in plan.arm_names and plan.arm("wide").recipe.model.width == 512
    finally:
        del ARMS["wide"]


def test_a_data_set_named_by_import_path_serves_either_task():
    for loss in ("mse", "cross_entropy"):
        recipe = Recipe().updated({"data.name": "custom_parts:line", "training.loss": loss, "training.epochs": 2})
        result = reglab.train_recipe(recipe)
        assert len(result.history) == 2 and ("test_acc" in result.summary) == (loss == "cross_entropy")
