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


def test_stacked_copies_count_their_work_and_their_summaries_record_the_threads_used(tmp_path):
    """Three stacked copies of the baseline MLP do three times its 47 MFLOP a step: two threads
    where one copy alone gets one; each copy's summary says two (it was written after the
    threads were restored, and said the worker's share)."""
    from reglab.lab.stack import run_stacked

    model, batch = mlp(40, 10, width=256), torch.randn(100, 40)
    assert threads_for(model, batch, available=2) == 1
    assert threads_for(model, batch, available=2, copies=3) == 2
    recipes = [Recipe().updated({"training.epochs": 1, "training.seed": s}) for s in range(3)]
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        results = run_stacked(recipes, [tmp_path / str(s) for s in range(3)], "auto")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert [r.summary["threads"] for r in results] == [2, 2, 2]


@pytest.mark.slow  # a fresh interpreter (2-3 s)
def test_a_run_builds_saves_and_resumes_its_optimizer_without_importing_dynamo(tmp_path):
    """torch.optim.Optimizer's add_param_group, state_dict and load_state_dict import
    torch._dynamo at their first call (1.2-1.7 s a process), as does counting FLOPs; a run on one
    thread, checkpointed every epoch, and a trainer loading its checkpoint now pay for neither."""
    code = (
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from reglab.lab.build import build\n"
        "from reglab.lab.recipe import Recipe\n"
        "from reglab.lab.run import run_recipe\n"
        "from reglab.train.checkpoint import load\n"
        "torch.set_num_threads(1)\n"
        "recipe = Recipe().updated({'training.epochs': 2, 'schedule.name': 'cosine'})\n"
        "run_recipe(recipe, sys.argv[1], plots=False, checkpoint_every=1, threads='auto')\n"
        "build(recipe).load_state_dict(load(Path(sys.argv[1]) / 'checkpoint.pt')['trainer'])\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow  # a fresh interpreter (2-3 s)
def test_counting_flops_imports_no_dynamo_and_counts_the_products():
    """A step's FLOPs on more than one core (every ``reglab train`` there): FlopCounterMode's
    dispatch wrapper imports torch._dynamo (1.1 s) unless its function is lent for the count;
    the count is 3 × the forward products' 2·B·in·out, and nothing stays lent after it."""
    code = (
        "import sys, torch\n"
        "from torch.utils import flop_counter\n"
        "from reglab.models import mlp\n"
        "from reglab.train.threads import step_flops, threads_for\n"
        "model, batch = mlp(40, 10, 256, 2), torch.randn(100, 40)\n"
        "print(step_flops(model, batch), threads_for(model, batch, available=2, copies=3))\n"
        "raw = flop_counter._FlopCounterMode.__torch_dispatch__.__wrapped__\n"
        "print('torch._dynamo' in sys.modules, hasattr(raw, '__dynamo_disable'))\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    counted, imported = done.stdout.split("\n")[:2]
    assert counted.split() == [str(3.0 * 2 * 100 * (40 * 256 + 256 * 256 + 256 * 10)), "2"]
    assert imported == "False False"


def test_a_count_after_torch_disabled_the_dispatch_itself_leaves_torchs_function_in_place():
    from torch.utils.flop_counter import FlopCounterMode, _FlopCounterMode

    with FlopCounterMode(display=False):  # torch's own first use: it imports dynamo and keeps its function
        torch.ones(2, 2) @ torch.ones(2, 2)
    raw = _FlopCounterMode.__torch_dispatch__.__wrapped__
    kept = raw.__dict__["__dynamo_disable"]
    model, batch = mlp(40, 10, 64, 1), torch.randn(32, 40)
    assert step_flops(model, batch) == 3.0 * 2 * 32 * (40 * 64 + 64 * 10)
    assert raw.__dict__["__dynamo_disable"] is kept
