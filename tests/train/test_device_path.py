"""The device-ready data path: autocast (bf16) and torch.compile of the (stacked) training step,
each against the plain path; the same code on CUDA where a GPU exists."""

import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from reglab.errors import ReglabError
from reglab.lab.recipe import Recipe
from reglab.lab.run import train_recipe
from reglab.lab.stack import run_stacked
from reglab.optim import Adam
from reglab.train import Trainer

KEYS = ("train_loss", "train_acc", "valid_loss", "valid_acc")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def _recipes(changes, epochs=3, seeds=3):
    base = Recipe().updated({"training.epochs": epochs, "data.train_size": 800, **changes})
    return [base.updated({"training.seed": s}) for s in range(seeds)]


def _worst(a, b):
    return max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-12) for x, y in zip(a, b) for k in KEYS)


def _dtypes_seen(model):
    seen = []
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            layer.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    return seen


def test_autocast_runs_the_products_in_bfloat16_and_the_loss_in_float32(toy_data):
    histories, seen = {}, {}
    for dtype in (None, torch.bfloat16):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
        trainer = Trainer(model, toy_data, Adam(model.parameters(), 1e-2), epochs=3, batch_size=16, autocast=dtype)
        seen[dtype] = _dtypes_seen(model)  # in training and evaluation
        histories[dtype] = trainer.fit()
        assert all(type(r["train_loss"]) is float for r in histories[dtype])
    assert set(seen[None]) == {torch.float32} and set(seen[torch.bfloat16]) == {torch.bfloat16}
    assert histories[None] != histories[torch.bfloat16]  # bfloat16 rounds: not the same numbers...
    assert _worst(histories[None], histories[torch.bfloat16]) < 0.05  # ...within its 8-bit mantissa's reach


def test_autocast_and_compile_are_checked():
    with pytest.raises(TypeError, match="autocast must be None or torch.bfloat16; got torch.float16"):
        Trainer(nn.Linear(8, 3), _toy(), Adam(nn.Linear(8, 3).parameters()), epochs=1, batch_size=4,
                autocast=torch.float16)  # fmt: skip
    model = nn.Linear(8, 3)
    with pytest.raises(TypeError, match="compile must be true or false, got 'yes'"):
        Trainer(model, _toy(), Adam(model.parameters()), epochs=1, batch_size=4, compile="yes")
    with pytest.raises(ValueError, match="training.autocast"):
        Recipe().updated({"training.autocast": "fp8"})
    with pytest.raises(TypeError, match="training.compile"):
        Recipe().updated({"training.compile": "yes"})


def _toy():
    from conftest import make_data

    return make_data()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_a_device_that_is_not_here_is_refused_before_training():
    with pytest.raises(ReglabError, match="'mps' but MPS"):
        train_recipe(Recipe().updated({"training.device": "mps"}))
    if not torch.cuda.is_available():
        with pytest.raises(ReglabError, match="CUDA is not available"):
            train_recipe(Recipe().updated({"training.device": "cuda:1"}))


@pytest.mark.slow
def test_stacked_copies_train_under_autocast_as_their_runs_do(tmp_path):
    recipes = _recipes({"training.autocast": "bf16", "data.train_size": 400}, epochs=2)
    apart = [train_recipe(r).history for r in recipes]
    stacked = [r.history for r in run_stacked(recipes, [tmp_path / f"s{s}" for s in range(3)])]
    plain = [train_recipe(r.updated({"training.autocast": "off"})).history for r in recipes]
    # bfloat16 products round differently batched and apart: close, within bfloat16's reach
    assert max(_worst(a, b) for a, b in zip(apart, stacked)) < 0.02
    assert max(_worst(a, b) for a, b in zip(plain, stacked)) > 1e-5  # autocast did apply to the stacked step


@pytest.mark.slow
def test_compiled_training_equals_the_plain_one_single_and_stacked(tmp_path):
    """torch.compile (inductor) of the training forward and backward: 2 epochs of a run, and of
    3 stacked copies, within 1e-5 (relative) of the same runs uncompiled."""
    recipes = _recipes({"data.train_size": 400}, epochs=2)
    compiled = [r.updated({"training.compile": True}) for r in recipes]
    plain = train_recipe(recipes[0]).history
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    once = train_recipe(compiled[0])
    assert counters["stats"]["unique_graphs"] >= 1  # the training forward did compile
    assert _worst(plain, once.history) < 1e-5
    apart = [plain] + [train_recipe(r).history for r in recipes[1:]]
    stacked = [r.history for r in run_stacked(compiled, [tmp_path / f"s{s}" for s in range(3)])]
    assert max(_worst(a, b) for a, b in zip(apart, stacked)) < 1e-5


@CUDA
def test_on_cuda_a_run_and_its_stacked_seeds_match_the_cpu_runs():
    recipes = _recipes({"training.device": "cuda"}, epochs=2)
    cpu = [train_recipe(r.updated({"training.device": "cpu"})).history for r in recipes]
    gpu = [train_recipe(r).history for r in recipes]
    stacked = [r.history for r in run_stacked(recipes, [Path(tempfile.mkdtemp()) / f"s{s}" for s in range(3)])]
    assert max(_worst(a, b) for a, b in zip(cpu, gpu)) < 1e-3  # other kernels, other rounding
    assert max(_worst(a, b) for a, b in zip(gpu, stacked)) < 1e-3


class _HostReads:
    """Counts the ways a tensor's value reaches Python (each one a wait for the device)."""

    NAMES = ("item", "tolist", "__float__", "__int__", "__bool__")

    def __init__(self, patch):
        self.count = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def counted(t, *a, _original=original, **k):
                self.count += 1
                return _original(t, *a, **k)

            patch.setattr(torch.Tensor, name, counted)


TECHNIQUES = {"model.dropout": 0.2, "augment.shift": 2, "regularization.input_noise": 0.1, "augment.cutout": 4,
              "mixing.label_smoothing": 0.1}  # fmt: skip
MIXING = {"mixing.mixup_alpha": 0.4, "mixing.cutmix_alpha": 1.0}


def _epoch_reads(signals, batch_size, monkeypatch, techniques=TECHNIQUES):
    """Host reads in one training epoch of a run, and of 2 stacked runs (signals: 180 training samples)."""
    from reglab.lab.build import build
    from reglab.lab.stack import rng_state
    from reglab.train.stacked import StackedTrainer

    data = {"data.name": "npz", "data.path": str(signals), "data.train_size": 0, "model.width": 16}
    recipes = _recipes({**techniques, **data, "data.batch_size": batch_size}, seeds=2)
    trainer = build(recipes[0])
    trainers, states = [], []
    for r in recipes:
        trainers.append(build(r))
        states.append(rng_state(trainers[-1].device))
    stacked = StackedTrainer(trainers, states, lambda m: Adam(m.parameters(), 1e-3))
    with monkeypatch.context() as m:
        reads = _HostReads(m)
        trainer.train_epoch()
        one = reads.count
        stacked.train_epoch()
    return one, reads.count - one


def test_an_epoch_reads_the_device_a_fixed_number_of_times_whatever_its_steps(signals, monkeypatch):
    """Losses and accuracies stay on the device until the epoch's end, in a run and in stacked
    runs, with augmentation, noise, dropout and soft targets on: the host reads as often at 4
    steps an epoch (batch 45) as at 12 (batch 15), and only a few times. Mixup and CutMix read
    two numbers a batch (whether to mix and which, and the seed of λ's Beta draw, which NumPy
    makes: torch's Beta sampler takes no generator): 2 reads a step and copy, no more."""
    few, many = _epoch_reads(signals, 45, monkeypatch), _epoch_reads(signals, 15, monkeypatch)
    assert few == many, (few, many)
    assert few[0] <= 3 and few[1] <= 6, few
    few, many = _epoch_reads(signals, 45, monkeypatch, MIXING), _epoch_reads(signals, 15, monkeypatch, MIXING)
    assert (many[0] - few[0], many[1] - few[1]) == (2 * 8, 2 * 2 * 8)  # 8 more steps: 2 reads each, per copy


def test_the_copies_validation_pass_reads_the_device_twice_however_many_copies(signals, monkeypatch):
    """``StackedTrainer.evaluate`` (a stacked fit's validation pass off the CPU): one list of
    losses and one of accuracies per epoch, where copy by copy reads 2 numbers a copy."""
    from reglab.lab.stack import stacked_trainer

    data = {"data.name": "npz", "data.path": str(signals), "data.train_size": 0, "model.width": 16}
    reads = []
    for copies in (2, 5):
        stacked = stacked_trainer(_recipes(data, seeds=copies))
        with monkeypatch.context() as m:
            counter = _HostReads(m)
            stacked.evaluate()
            together = counter.count
            for s, t in enumerate(stacked.trainers):
                stacked.model.copy_to(s)
                t.evaluate(t.data.x_valid, t.data.y_valid)
            reads.append((together, counter.count - together))
    assert reads == [(2, 2 * 2), (2, 2 * 5)]
