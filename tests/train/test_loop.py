import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_data
from torch import nn

from reglab.train import Callback, Trainer, fit
from reglab.train.loop import History


def _model(seed=0, features=8, classes=3, **kw):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, classes))


def test_history_records_every_epoch(toy_data):
    m = _model()
    h = fit(m, toy_data, torch.optim.SGD(m.parameters(), lr=0.1), epochs=4, batch_size=16)
    assert isinstance(h, History) and [r["epoch"] for r in h] == [1, 2, 3, 4]
    for key in ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "time"):
        assert all(math.isfinite(r[key]) for r in h), key
    assert h.column("lr") == [0.1] * 4
    assert h[-1]["train_loss"] < h[0]["train_loss"]


def test_a_tensor_lr_is_recorded_as_a_number(toy_data):
    import json

    m = _model()
    h = fit(m, toy_data, torch.optim.Adam(m.parameters(), lr=torch.tensor(0.01)), epochs=2, batch_size=16)
    assert h.column("lr") == [pytest.approx(0.01)] * 2 and all(type(r["lr"]) is float for r in h)
    json.dumps(list(h))


def test_validation_metrics_are_exact_in_eval_mode(toy_data):
    m = _model()
    trainer = Trainer(m, toy_data, torch.optim.Adam(m.parameters()), epochs=2, batch_size=32)
    h = trainer.fit()
    m.eval()
    with torch.no_grad():
        out = m(toy_data.x_valid)
    assert h[-1]["valid_loss"] == pytest.approx(float(nn.functional.cross_entropy(out, toy_data.y_valid)), rel=1e-6)
    assert h[-1]["valid_acc"] == pytest.approx(float((out.argmax(1) == toy_data.y_valid).float().mean()))


@pytest.mark.parametrize("soft", [False, True])
def test_training_metrics_are_exact_over_uneven_batches(toy_data, soft):
    """With lr = 0 and no dropout the weights never move, so the epoch's training loss and
    accuracy must equal one pass over the whole training set (96 samples in batches of 10:
    nine full ones and one of 6, weighted by size); soft targets are scored by their argmax."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    smooth = [lambda x, y, g: (x, F.one_hot(y, 3).float() * 0.9 + 0.1 / 3)] if soft else []
    h = fit(m, toy_data, torch.optim.SGD(m.parameters(), lr=0.0), epochs=2, batch_size=10, batch_transforms=smooth)
    with torch.no_grad():
        out = m(toy_data.x_train).double()
    target = F.one_hot(toy_data.y_train, 3).double() * 0.9 + 0.1 / 3 if soft else toy_data.y_train
    for record in h:
        assert record["train_loss"] == pytest.approx(float(F.cross_entropy(out, target)), rel=1e-6)
        assert record["train_acc"] == float((out.argmax(1) == toy_data.y_train).double().mean())
    assert 0 < h[0]["train_acc"] < 1


class ModeSpy(nn.Module):
    """Records the training flag and grad mode of every forward pass."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled(), len(x)))
        return x


def test_train_and_eval_modes_and_no_grad():
    data = make_data(n_train=40, n_valid=10, features=3, classes=3)
    spy = ModeSpy()
    m = nn.Sequential(nn.Linear(3, 3), spy)
    Trainer(m, data, torch.optim.SGD(m.parameters(), lr=0.1), epochs=1, batch_size=40).fit()
    # the model check (one sample, before any step), the training batch, the validation set
    assert spy.seen == [(False, False, 1), (True, True, 40), (False, False, 10)]
    assert m.training, "evaluate() must restore the training flag"


def test_full_batch_gradient_descent_takes_one_step_per_epoch(toy_data):
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    steps = []
    opt.register_step_post_hook(lambda *a: steps.append(1))
    fit(m, toy_data, opt, epochs=3, batch_size=len(toy_data.x_train))
    assert len(steps) == 3
    steps.clear()
    fit(m, toy_data, opt, epochs=1, batch_size=10)  # 96 samples: 9 full batches and one of 6
    assert len(steps) == 10


def test_same_seed_same_history_different_seed_differs(toy_data):
    def run(seed):
        m = _model(seed)
        h = fit(m, toy_data, torch.optim.Adam(m.parameters()), epochs=3, batch_size=16, seed=seed)
        return [{k: v for k, v in r.items() if k != "time"} for r in h]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_batch_transforms_apply_to_training_batches_only(toy_data):
    sizes = []

    def transform(x, y, generator):
        assert isinstance(generator, torch.Generator)
        sizes.append(len(x))
        return x * 0, y

    inputs = []
    spy = nn.Module()
    spy.forward = lambda x: inputs.append((spy.training, float(x.abs().sum()))) or x
    m = nn.Sequential(spy, *_model())
    fit(m, toy_data, torch.optim.SGD(m.parameters(), lr=0.1), epochs=1, batch_size=32, batch_transforms=[transform])
    assert sizes == [32, 32, 32]
    assert all(total == 0 for training, total in inputs if training)
    assert [total > 0 for training, total in inputs if not training] == [
        True,
        True,
    ]  # model check, validation: untouched


def test_loss_terms_enter_the_gradient_but_not_the_reported_loss(toy_data):
    m1, m2 = _model(), _model()
    fit(
        m1,
        toy_data,
        torch.optim.SGD(m1.parameters(), lr=0.1),
        epochs=1,
        batch_size=96,
        loss_terms=[lambda m: 0 * m[0].weight.sum()],
    )
    h = fit(
        m2,
        toy_data,
        torch.optim.SGD(m2.parameters(), lr=0.1),
        epochs=1,
        batch_size=96,
        loss_terms=[lambda m: 10.0 * m[0].weight.pow(2).sum()],
    )
    assert not torch.allclose(m1[0].weight, m2[0].weight)
    assert h[0]["train_loss"] < 5  # the penalty is not part of the reported data loss


def test_soft_targets_are_accepted(toy_data):
    def smooth(x, y, generator):
        return x, nn.functional.one_hot(y, 3).float() * 0.9 + 0.1 / 3

    m = _model()
    h = fit(m, toy_data, torch.optim.Adam(m.parameters(), lr=0.01), epochs=5, batch_size=32, batch_transforms=[smooth])
    assert h[-1]["train_acc"] > 0.8


def test_non_finite_loss_stops_with_reason(toy_data):
    m = _model()
    trainer = Trainer(m, toy_data, torch.optim.SGD(m.parameters(), lr=1e30), epochs=20, batch_size=16)
    trainer.fit()
    assert trainer.epoch < 20 and "non-finite train_loss" in trainer.stop_reason


def test_callbacks_can_stop_and_completed_runs_say_so(toy_data):
    class StopAt2(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                trainer.stop("enough")

    m = _model()
    t = Trainer(m, toy_data, torch.optim.SGD(m.parameters(), lr=0.1), epochs=5, batch_size=32, callbacks=[StopAt2()])
    t.fit()
    assert (t.epoch, t.stop_reason) == (2, "enough")
    t2 = Trainer(m, toy_data, torch.optim.SGD(m.parameters(), lr=0.1), epochs=2, batch_size=32)
    t2.fit()
    assert t2.stop_reason == "completed"


def test_batch_norm_batch_of_one_is_refused():
    data = make_data(n_train=33)
    m = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="batch of 1 sample"):
        Trainer(m, data, torch.optim.SGD(m.parameters(), lr=0.1), epochs=1, batch_size=16)
    Trainer(m, data, torch.optim.SGD(m.parameters(), lr=0.1), epochs=1, batch_size=11)  # 3 x 11: fine


def test_state_dict_round_trip_continues_identically(toy_data):
    def trainer():
        m = _model()
        return Trainer(m, toy_data, torch.optim.Adam(m.parameters()), epochs=6, batch_size=16, seed=5)

    straight = trainer()
    straight.fit()
    first = trainer()
    first.epochs = 3
    first.fit()
    state = first.state_dict()
    second = trainer()
    torch.manual_seed(123)  # the global RNG is restored from the state, not from here
    second.load_state_dict(state)
    second.stop_reason = None
    second.fit()
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(second.history) == strip(straight.history)
    for a, b in zip(second.model.parameters(), straight.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "options, error, words",
    [
        ({"epochs": 0}, ValueError, ["epochs", "0"]),
        ({"epochs": 2.5}, TypeError, ["epochs", "2.5"]),
        ({"batch_size": 0}, ValueError, ["batch_size", "0"]),
        ({"seed": -1}, ValueError, ["seed", "-1"]),
    ],
)
def test_bad_loop_options_fail_at_construction(toy_data, options, error, words):
    m = _model()
    with pytest.raises(error) as info:
        Trainer(m, toy_data, torch.optim.SGD(m.parameters(), lr=0.1), **{"epochs": 1, "batch_size": 16, **options})
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize(
    "model, words",
    [
        (lambda: _model(classes=5), ["output has shape (5,) per sample", "(3,) (3 classes)"]),
        (lambda: _model(features=6), ["does not take the data's inputs", "shape (8,)"]),
    ],
    ids=["outputs", "inputs"],
)
def test_a_model_that_does_not_fit_the_data_fails_before_the_first_step(toy_data, model, words):
    m = model()
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(ValueError) as info:
        fit(m, toy_data, torch.optim.SGD(m.parameters(), lr=0.1), epochs=1, batch_size=16)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters())) and m.training


def test_an_optimizer_of_another_model_is_refused(toy_data):
    """An optimizer built on another model's parameters trained nothing, silently (the loss
    stayed flat); an optimizer holding some of the model's parameters (the rest frozen) is fine."""
    m, other = _model(), _model()
    with pytest.raises(ValueError, match="the optimizer holds none of the model's parameters"):
        Trainer(m, toy_data, torch.optim.SGD(other.parameters(), lr=0.1), epochs=1, batch_size=16)
    last = list(m.parameters())[-1]
    before = [p.detach().clone() for p in m.parameters()]
    fit(m, toy_data, torch.optim.SGD([last], lr=0.1), epochs=1, batch_size=16)
    changed = [not torch.equal(a, b) for a, b in zip(before, m.parameters())]
    assert changed[-1] and not any(changed[:-1])


def test_the_output_check_leaves_a_custom_loss_alone(toy_data):
    """A loss of the user's own may want another output shape (one logit for two classes, say)."""
    data = make_data(classes=2)
    m = _model(classes=1)
    bce = lambda out, y: F.binary_cross_entropy_with_logits(out[:, 0], y.float())  # noqa: E731
    history = fit(m, data, torch.optim.SGD(m.parameters(), lr=0.1), epochs=1, batch_size=16, loss_fn=bce)
    assert len(history) == 1


def _opt(m):
    return torch.optim.SGD(m.parameters(), lr=0.1)


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda m, d: {"data": (d.x_train, d.y_train)}, TypeError, ["data must be a reglab Data", "got a tuple of 2"]),
        (
            lambda m, d: {"optimizer": torch.optim.SGD},
            TypeError,
            ["optimizer must be a torch.optim.Optimizer", "the class SGD itself"],
        ),
        (lambda m, d: {"model": m.state_dict()}, TypeError, ["model must be a torch.nn.Module", "OrderedDict"]),
        (lambda m, d: {"callbacks": [1]}, TypeError, ["callbacks[0] is 1", "none of the hooks"]),
        (
            lambda m, d: {"callbacks": [torch.optim.lr_scheduler.StepLR(_opt(m), 1)]},
            TypeError,
            ["torch scheduler (StepLR)", "LRScheduler(scheduler)"],
        ),
        (lambda m, d: {"batch_transforms": [0.3]}, TypeError, ["batch_transforms[0] must be callable", "0.3"]),
        (lambda m, d: {"loss_terms": ["l1"]}, TypeError, ["loss_terms[0] must be callable", "'l1'"]),
        (
            lambda m, d: {"loss_fn": "hinge"},
            ValueError,
            ["loss_fn must be one of cross_entropy, huber, mae, mse", "'hinge'"],
        ),  # fmt: skip
        (lambda m, d: {"loss_fn": "mse"}, ValueError, ["'mse' does not fit class labels"]),
        (lambda m, d: {"loss_fn": 3}, TypeError, ["loss_fn must be a function", "got 3"]),
    ],
    ids=[
        "data-tuple",
        "optimizer-class",
        "model-state-dict",
        "callback-int",
        "bare-scheduler",
        "transform",
        "loss-term",
        "loss-name",
        "loss-task",
        "loss-int",
    ],
)
def test_wrong_parts_are_refused_before_the_first_step(toy_data, make, error, words):
    """Each of these failed inside the loop with an AttributeError or 'str object is not
    callable', or (a callback without hooks, such as a bare torch scheduler) was silently ignored."""
    m = _model()
    parts = {"model": m, "data": toy_data, "optimizer": _opt(m), **make(m, toy_data)}
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(error) as info:
        fit(parts.pop("model"), parts.pop("data"), parts.pop("optimizer"), epochs=1, batch_size=16, **parts)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))


def test_a_loss_by_name_and_a_scheduler_wrapped_for_its_optimizer(toy_data):
    from reglab.train import LRScheduler

    m = _model()
    opt = _opt(m)
    named = fit(
        m,
        toy_data,
        opt,
        epochs=2,
        batch_size=16,
        loss_fn="cross_entropy",
        callbacks=[LRScheduler(torch.optim.lr_scheduler.StepLR(opt, 1, 0.5))],
    )
    assert [r["lr"] for r in named] == [0.1, 0.05]
    with pytest.raises(ValueError, match="built on another optimizer"):
        fit(
            m,
            toy_data,
            opt,
            epochs=1,
            batch_size=16,
            callbacks=[LRScheduler(torch.optim.lr_scheduler.StepLR(_opt(m), 1))],
        )
    with pytest.raises(TypeError, match="LRScheduler takes a torch.optim.lr_scheduler scheduler, got str"):
        LRScheduler("cosine")


def test_a_batch_transform_must_return_x_and_y(toy_data):
    m = _model()
    with pytest.raises(TypeError, match=r"a batch transform returns \(x, y\); .* returned a tensor of shape \(16, 8\)"):
        fit(m, toy_data, _opt(m), epochs=1, batch_size=16, batch_transforms=[lambda x, y, g: x])
