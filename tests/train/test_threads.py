"""Threads picked for the work (reglab.train.threads) and what reglab train and the study do with them."""

import json

import pytest
import torch

from reglab.lab.recipe import Recipe
from reglab.lab.run import run_recipe
from reglab.models import cnn, mlp
from reglab.train.threads import FLOPS_PER_THREAD, step_flops, threads_for


def test_step_flops_count_the_matrix_products_three_times():
    model = mlp(40, 10, width=256, depth=2)
    batch = torch.randn(100, 40)
    forward = 2 * 100 * (40 * 256 + 256 * 256 + 256 * 10)  # a multiply and an add per weight and sample
    assert step_flops(model, batch) == 3 * forward
    assert model.training  # its mode is left as it was


def test_a_small_mlp_gets_one_thread_a_large_cnn_all_the_cores():
    small = threads_for(mlp(40, 10, width=256), torch.randn(100, 40), available=16)
    assert small == 1  # 47 MFLOP a step
    big = cnn((1, 28, 28), 10, width=32)
    flops = step_flops(big, torch.randn(100, 1, 28, 28))
    assert threads_for(big, torch.randn(100, 1, 28, 28), available=16) == min(16, int(flops // FLOPS_PER_THREAD))
    assert threads_for(big, torch.randn(100, 1, 28, 28), available=2) == 2


def test_reglab_train_runs_with_the_picked_or_the_given_threads_and_restores_them(tmp_path):
    before = torch.get_num_threads()
    recipe = Recipe().updated({"training.epochs": 1})
    auto = run_recipe(recipe, tmp_path / "auto", plots=False, threads="auto")
    given = run_recipe(recipe, tmp_path / "given", plots=False, threads=2)
    assert auto.summary["threads"] == 1 and given.summary["threads"] == 2
    assert json.loads((tmp_path / "auto" / "summary.json").read_text())["threads"] == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        run_recipe(recipe, tmp_path / "bad", plots=False, threads=0)
