"""Stacked training (reglab.train.stacked) against separate runs of the same recipes."""

import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from reglab import cnn
from reglab.lab.build import build
from reglab.lab.recipe import Recipe
from reglab.lab.run import train_recipe
from reglab.lab.stack import recipe_problem, run_stacked, stack_key, stacked_trainer
from reglab.lab.study.arms import ARMS
from reglab.regularize import Dropout
from reglab.train.stacked import layers_problem

KEYS = ("train_loss", "train_acc", "valid_loss", "valid_acc")


def _recipes(changes, epochs=3, seeds=3):
    base = Recipe().updated({"training.epochs": epochs, "data.train_size": 800, **changes})
    return [base.updated({"training.seed": s}) for s in range(seeds)]


def _worst(a, b, keys=KEYS):
    assert [len(h) for h in a] == [len(h) for h in b]
    return max(abs(ra[k] - rb[k]) / max(abs(ra[k]), 1e-12) for x, y in zip(a, b) for ra, rb in zip(x, y)
               for k in keys if k in ra)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("arm", [a for a in ARMS if a != "half-width"] + ["half-width"])
def test_every_default_arm_trains_stacked_as_its_seeds_train_apart(arm, tmp_path):
    changes = dict(ARMS[arm][1])
    if changes.get("model.width") == "half":
        changes["model.width"] = 128
    recipes = _recipes(changes)
    assert recipe_problem(recipes[0]) is None
    apart = [train_recipe(r).history for r in recipes]
    stacked = [r.history for r in run_stacked(recipes, [tmp_path / f"seed{s}" for s in range(3)])]
    if arm == "batch-norm":  # Adam on the pre-norm biases, whose exact gradient is 0 (reglab.train.stacked)
        assert _worst(apart, stacked, ("train_loss", "train_acc")) < 1e-5
        assert _worst(apart, stacked, ("valid_loss",)) < 1e-3
    else:
        assert _worst(apart, stacked) < 1e-5
    again = [r.history for r in run_stacked(recipes, [tmp_path / f"again{s}" for s in range(3)])]
    assert [[{k: r[k] for k in KEYS} for r in h] for h in again] == [[{k: r[k] for k in KEYS} for r in h]
                                                                     for h in stacked]  # fmt: skip


BATCH_ARMS = ("baseline", "input-noise", "shift", "label-smoothing", "mixup", "cutmix")  # the batches differ


def _exact(histories):
    return [[{k: r[k] for k in KEYS} for r in h] for h in histories]


@pytest.mark.slow
def test_arms_whose_batches_differ_train_stacked_as_they_train_apart(tmp_path):
    """The default study's arms that share the model and the optimizer and differ only in what
    their batches go through (augmentation, noise, label smoothing, mixing: class labels and
    soft targets side by side) train as one model of 12 copies: each copy's history equals its
    separate training within 1e-5, and the one it has stacked with its own arm's seeds alone within
    1e-6 (not bitwise: Adam's fused kernel rounds the vectorized body of a tensor and its last
    elements apart, and which elements are last depends on how many copies the tensor holds)."""
    recipes = [r for arm in BATCH_ARMS for r in _recipes(ARMS[arm][1], seeds=2)]
    assert len({stack_key(r) for r in recipes}) == 1
    together = [r.history for r in run_stacked(recipes, [tmp_path / f"all{i}" for i in range(12)])]
    apart = [train_recipe(r).history for r in recipes]
    assert _worst(apart, together) < 1e-5
    pairs = [(recipes[i : i + 2], [tmp_path / f"{i}a", tmp_path / f"{i}b"]) for i in range(0, 12, 2)]
    alone = [r.history for rs, outs in pairs for r in run_stacked(rs, outs)]
    assert _worst(alone, together) < 1e-6


def test_what_stacks_together_is_the_recipe_but_the_seed_and_the_batches():
    base = Recipe()
    joined = (*BATCH_ARMS, "early-stopping", "l2", "weight-decay", "l1-proximal")  # the last three: test_stacked_shrink
    same = [base.updated(ARMS[arm][1]).updated({"training.seed": 4}) for arm in joined]
    same.append(base.updated({"early_stopping.enabled": True, "early_stopping.patience": 3}))
    assert len({stack_key(r) for r in [base, *same]}) == 1
    for arm in ("dropout", "batch-norm"):
        assert stack_key(base.updated(ARMS[arm][1])) != stack_key(base), arm
    assert stack_key(base.updated({"model.width": 128})) != stack_key(base)
    assert stack_key(base.updated({"training.epochs": 7})) != stack_key(base)
    assert stack_key(base.updated({"data.batch_size": 50})) != stack_key(base)


@pytest.mark.slow
def test_an_early_stopped_copy_is_frozen_and_restored_to_its_best_epoch(tmp_path):
    recipes = _recipes({"early_stopping.enabled": True, "early_stopping.patience": 2}, epochs=40)
    apart = [train_recipe(r) for r in recipes]
    stacked = run_stacked(recipes, [tmp_path / f"seed{s}" for s in range(3)])
    stops = [r.summary["stopped_epoch"] for r in stacked]
    assert stops == [r.summary["stopped_epoch"] for r in apart] and min(stops) < 40 and len(set(stops)) > 1
    for recipe, a, b in zip(recipes, apart, stacked):
        best = b.summary["restored_epoch"]
        assert best == a.summary["restored_epoch"] < b.summary["stopped_epoch"]
        fresh = build(recipe)  # the restored weights are the best epoch's: they give its validation loss again
        init = {k: v.clone() for k, v in fresh.model.state_dict().items()}
        fresh.model.load_state_dict(b.model.state_dict())
        assert fresh.evaluate(fresh.data.x_valid, fresh.data.y_valid)[0] == b.history[best - 1]["valid_loss"]
        for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            # the separate run's restored weights, to float rounding carried over ~100 Adam steps: within
            # 2% of how far training moved them. Most weights agree to ~1e-6 of that; where rounding
            # puts one sample on the other side of a ReLU's kink, that unit's path differs from then
            # on (seed 0 on an AMD EPYC Zen 4: one first-layer unit, 0.7% of the tensors' paths)
            assert (y - x).norm() <= 0.02 * (x - init[name]).norm(), name
        assert (tmp_path / f"seed{a.summary['recipe']['training']['seed']}" / "summary.json").exists()


@pytest.mark.slow
def test_copies_with_their_own_early_stopping_stop_as_they_do_apart(tmp_path):
    """One stacked model of copies whose early stopping differs (patience 2, patience 5, none):
    each stops and restores at the epochs of its separate run, the others going on."""
    stops = [{"early_stopping.enabled": True, "early_stopping.patience": 2},
             {"early_stopping.enabled": True, "early_stopping.patience": 5}, {}]  # fmt: skip
    recipes = [_recipes(changes, epochs=40)[s] for s, changes in enumerate(stops)]
    assert len({stack_key(r) for r in recipes}) == 1
    apart = [train_recipe(r) for r in recipes]
    stacked = run_stacked(recipes, [tmp_path / f"copy{s}" for s in range(3)])
    ends = [(r.summary["stopped_epoch"], r.summary["restored_epoch"]) for r in stacked]
    assert ends == [(r.summary["stopped_epoch"], r.summary["restored_epoch"]) for r in apart]
    assert ends[0][0] < ends[1][0] < 40 and ends[2] == (40, None), ends
    for a, b in zip(apart, stacked):  # each copy's epochs, to the rounding carried over up to 40 epochs
        assert len(a.history) == len(b.history)  # (5e-5 at most on an AMD Zen 3)
        for ra, rb in zip(a.history, b.history):
            assert rb["valid_loss"] == pytest.approx(ra["valid_loss"], rel=1e-3)


EVALUATED = {  # what a validation pass sees: eval-mode norms and dropout, soft training targets, MSE
    "baseline": {},
    "batch-norm-dropout": {"model.norm": "batch", "model.dropout": 0.3},
    "label-smoothing": {"mixing.label_smoothing": 0.1},
    "regression": {"data.name": "diabetes", "training.loss": "mse", "data.batch_size": 32, "data.train_size": 200},
}


@pytest.mark.parametrize("changes", EVALUATED.values(), ids=EVALUATED.keys())
def test_one_validation_pass_of_every_copy_equals_each_copys_own(changes):
    stacked = stacked_trainer(_recipes({"data.train_size": 400, **changes}, epochs=1, seeds=3))
    stacked.train_epoch()
    together = stacked.evaluate()
    for s, t in enumerate(stacked.trainers):
        stacked.model.copy_to(s)
        loss, acc = t.evaluate(t.data.x_valid, t.data.y_valid)
        assert together[s][0] == pytest.approx(loss, rel=1e-6), s
        if acc is None:
            assert together[s][1] is None
        else:  # an argmax could flip on rounding: one sample at most
            assert abs(together[s][1] - acc) <= 1 / len(t.data.x_valid), s
    assert len({loss for loss, _ in together}) == 3, "each copy's own weights and validation split"


def test_a_fit_with_one_validation_pass_records_the_histories_of_copy_by_copy():
    """``one_pass`` (the default off the CPU) on CPU: the same epochs, stops and histories."""
    recipes = _recipes({"early_stopping.enabled": True, "early_stopping.patience": 1, "data.train_size": 400},
                       epochs=6)  # fmt: skip
    histories = []
    for one_pass in (False, True):
        stacked = stacked_trainer(recipes)
        stacked.one_pass = one_pass
        histories.append(stacked.fit())
    assert _worst(*histories) < 1e-6


def test_what_cannot_be_stacked_says_why():
    assert "rnn" in recipe_problem(Recipe().updated({"model.kind": "rnn", "model.depth": 1}))
    assert "clipping" in recipe_problem(Recipe().updated({"optimizer.options.clip_norm": 1.0}))
    assert "penalty" in recipe_problem(Recipe().updated({"regularization.l2": 1e-3}))
    assert "validation loss" in recipe_problem(Recipe().updated({"schedule.name": "plateau"}))
    assert layers_problem([cnn((1, 40), 10)]) == "a Conv1d layer"
    with pytest.raises(ValueError, match="except the seed, what their batches go through, early stopping and the"):
        run_stacked([Recipe(), Recipe().updated({"model.width": 64})], [Path(tempfile.mkdtemp())] * 2)


@pytest.mark.parametrize("layer", [Dropout, nn.Dropout])
def test_a_stacked_copy_s_dropout_mask_is_the_one_its_own_model_draws(layer):
    """reglab's Dropout (float32 uniforms) and torch's (``bernoulli_``) alike: copy s's mask in
    the stacked model is the one its own model draws from the global RNG in copy s's state."""
    from reglab.train.stacked_model import StackedModel

    models = [nn.Sequential(nn.Linear(5, 64), layer(0.4)) for _ in range(3)]
    states = [torch.manual_seed(10 + s).get_state() for s in range(3)]
    generators = [torch.Generator().manual_seed(0) for _ in range(3)]
    for g, state in zip(generators, states):
        g.set_state(state)
    x = torch.randn(3, 11, 5)
    stacked = StackedModel(models, generators).train()(x)
    for s, model in enumerate(models):
        torch.set_rng_state(states[s])
        own = model.train()(x[s])
        assert torch.equal(stacked[s] == 0, own == 0) and (own == 0).any()
        torch.testing.assert_close(stacked[s], own, rtol=1e-6, atol=1e-6)  # baddbmm rounds as addmm, nearly
