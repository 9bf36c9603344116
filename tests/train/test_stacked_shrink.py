"""Each stacked copy's own weight decay and proximal L1 (reglab.train.stacked_shrink)."""

import pytest
import torch
from torch import nn

from reglab.errors import ReglabError
from reglab.lab.recipe import Recipe
from reglab.lab.run import train_recipe
from reglab.lab.stack import run_stacked, shrinks_per_copy, stack_key, stacked_trainer
from reglab.lab.study.arms import ARMS
from reglab.optim import build_optimizer
from reglab.train.stacked_model import StackedModel
from reglab.train.stacked_shrink import CopyShrink, shrink_problem

KEYS = ("train_loss", "train_acc", "valid_loss", "valid_acc")
SHRINKING = ("l2", "weight-decay", "l1-proximal")  # the default study's arms that differ in their optimizer


def _models(seed=0):
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)) for _ in range(4)]


COPIES = [  # each copy's own options: none, coupled L2, decoupled decay with proximal L1, proximal L1 alone
    {},
    {"weight_decay": 0.3},
    {"weight_decay": 0.2, "decoupled": True, "l1_proximal": 0.05},
    {"l1_proximal": 1.0},
]


def test_each_copy_is_shrunk_by_its_own_strengths_against_a_float64_reference():
    models = _models()
    optimizers = [build_optimizer("adam", 0.1, options, m) for m, options in zip(models, COPIES)]
    stacked = StackedModel(models, [torch.Generator() for _ in models])
    shrink = CopyShrink(stacked.layers, models, optimizers)
    params = list(stacked.parameters())  # weights (S, in, out), biases (S, 1, out)
    for p in params:
        p.grad = torch.randn_like(p)
    w0 = [p.detach().double().clone() for p in params]
    g0 = [p.grad.double().clone() for p in params]
    lr = 0.1
    shrink.before_step(lr)
    for p, w, g in zip(params, w0, g0):
        is_weight = p.ndim == 3 and p.shape[1] != 1  # a bias is (S, 1, out): never decayed (weights only)
        for s, options in enumerate(COPIES):
            wd = options.get("weight_decay", 0.0) if is_weight else 0.0
            coupled, decoupled = (0.0, wd) if options.get("decoupled") else (wd, 0.0)
            torch.testing.assert_close(p.grad[s].double(), g[s] + coupled * w[s], rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(p[s].double(), (1 - lr * decoupled) * w[s], rtol=1e-6, atol=1e-7)
    before = [p.detach().double().clone() for p in params]
    shrink.after_step(lr)
    for p, w in zip(params, before):
        is_weight = p.ndim == 3 and p.shape[1] != 1
        for s, options in enumerate(COPIES):
            t = lr * options.get("l1_proximal", 0.0) if is_weight else 0.0
            expected = torch.sign(w[s]) * torch.clamp(w[s].abs() - t, min=0)
            torch.testing.assert_close(p[s].double(), expected, rtol=1e-6, atol=1e-7)
            assert ((p[s] == 0) == (w[s].abs() <= t)).all()  # exact zeros where |W| ≤ ηα, and only there
    assert (params[0][3] == 0).sum() >= 3  # ηα = 0.1: several of the first layer's 20 weights
    assert (params[1] == before[1].float()).all()  # the first layer's biases: no copy shrinks them


def test_copies_without_any_shrinkage_leave_nothing_to_do():
    models = _models()
    optimizers = [build_optimizer("adam", 0.1, {}, m) for m in models]
    assert not CopyShrink(StackedModel(models, [torch.Generator()] * 4).layers, models, optimizers)


def test_what_acts_before_the_decay_is_refused_with_its_name():
    model = _models()[0]
    assert shrink_problem([build_optimizer("adam", 0.1, {"weight_decay": 0.1}, model)]) is None
    for options, name in (({"maximize": True}, "maximize"), ({"clip_value": 1.0}, "clipping by value"),
                          ({"weight_decay_schedule": lambda t: 1.0}, "schedule")):  # fmt: skip
        optimizer = build_optimizer("adam", 0.1, {"weight_decay": 0.1, **options}, model)
        assert name in shrink_problem([optimizer])
        assert shrink_problem([build_optimizer("adam", 0.1, options, model)]) is None  # no decay to move


def _recipes(changes, epochs=3, seeds=2, optimizer=None):
    base = Recipe().updated({"training.epochs": epochs, "data.train_size": 800, **(optimizer or {})})
    return [base.updated({**changes, "training.seed": s}) for s in range(seeds)]


def _worst(a, b):
    return max(abs(ra[k] - rb[k]) / max(abs(ra[k]), 1e-12) for x, y in zip(a, b) for ra, rb in zip(x, y)
               for k in KEYS)  # fmt: skip


def test_the_penalty_arms_stack_with_the_baseline_unless_something_acts_before_the_decay():
    base = Recipe()
    for arm in SHRINKING:
        assert stack_key(base.updated(ARMS[arm][1])) == stack_key(base), arm
    clipped = base.updated({"optimizer.options.clip_value": 1.0})
    assert shrinks_per_copy(base) and not shrinks_per_copy(clipped)
    assert stack_key(clipped.updated(ARMS["l2"][1])) != stack_key(clipped)
    assert stack_key(base.updated({"optimizer.options.betas": [0.8, 0.99]})) != stack_key(base)
    assert stack_key(base.updated({"optimizer.options.l1": 1e-3})) != stack_key(base)  # the subgradient: shared


@pytest.mark.slow
@pytest.mark.filterwarnings("error::UserWarning")  # nor a schedule's "lr_scheduler.step() before optimizer.step()"
@pytest.mark.parametrize(
    "optimizer",
    [
        {},
        {"optimizer.name": "sgd", "optimizer.lr": 0.05, "optimizer.options.momentum": 0.9},
        {"optimizer.name": "adamw"},
        {"schedule.name": "step", "schedule.step_size": 1, "schedule.gamma": 0.5},
    ],
    ids=["adam", "sgd-momentum", "adamw", "adam-step-schedule"],
)
def test_copies_that_differ_in_their_decay_train_stacked_as_they_train_apart(optimizer, tmp_path):
    """The baseline and the three penalty arms of the default study, two seeds each, as one
    model of 8 copies: each copy's history equals its separate run within 1e-5 over 3 epochs
    (Adam's kernel with coupled decay, the chain's decoupled decay and proximal step apart;
    AdamW's default decay of 0.01 where an arm gives none; a schedule that halves η every epoch,
    which each copy's decay and threshold follow), and again bitwise."""
    recipes = [r for arm in ("baseline", *SHRINKING) for r in _recipes(ARMS[arm][1], optimizer=optimizer)]
    assert len({stack_key(r) for r in recipes}) == 1
    apart = [train_recipe(r).history for r in recipes]
    stacked = [r.history for r in run_stacked(recipes, [tmp_path / f"copy{i}" for i in range(8)])]
    assert _worst(apart, stacked) < 1e-5
    again = [r.history for r in run_stacked(recipes, [tmp_path / f"again{i}" for i in range(8)])]
    assert [[{k: r[k] for k in KEYS} for r in h] for h in again] == [[{k: r[k] for k in KEYS} for r in h]
                                                                     for h in stacked]  # fmt: skip


def test_the_stacked_optimizer_holds_no_decay_of_its_own():
    recipes = [r for arm in ("baseline", "weight-decay") for r in _recipes(ARMS[arm][1], epochs=1, seeds=1)]
    stacked = stacked_trainer(recipes)
    assert all(g["weight_decay"] == 0 and g["l1_proximal"] == 0 for g in stacked.optimizer.param_groups)
    weights = [layer.weight for layer in stacked.model.layers if hasattr(layer, "transposed")]
    assert len(weights) == 3 and [p for p, _ in stacked.shrink.decoupled] == weights  # not the biases
    assert [copies for _, copies in stacked.shrink.decoupled] == [[(1, 0.5)]] * 3  # the second copy's, 0.5


def test_a_clipped_optimizer_with_decay_keeps_its_decay_in_the_stacked_optimizer():
    recipes = _recipes({"optimizer.options.clip_value": 1.0, **ARMS["l2"][1]}, epochs=1)
    stacked = stacked_trainer(recipes)
    assert stacked.shrink is None
    assert any(g["weight_decay"] == 1e-2 for g in stacked.optimizer.param_groups)


def test_a_stacked_trainer_asked_to_shrink_what_acts_before_the_decay_refuses():
    from reglab.lab.build import build
    from reglab.train.stacked import StackedTrainer

    recipes = _recipes({"optimizer.options.maximize": True, **ARMS["l2"][1]}, epochs=1)
    trainers = [build(r) for r in recipes]
    with pytest.raises(ReglabError, match="maximize"):
        StackedTrainer(trainers, [torch.get_rng_state()] * 2,
                       lambda m: build_optimizer("adam", 1e-3, {}, m), shrink=True)  # fmt: skip
