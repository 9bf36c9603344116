"""EarlyStopping driven by made-up metric sequences."""

import math

import pytest
import torch
from torch import nn

from reglab.train import Callback, EarlyStopping, GradNorms, LRScheduler, fit
from reglab.train.callbacks import WeightStats


class FakeTrainer:
    """Just what callbacks use: model, epoch, stop(); weights = the epoch number."""

    def __init__(self):
        self.model = nn.Linear(1, 1, bias=False).requires_grad_(False)
        self.epoch = 0
        self.stop_reason = None

    def stop(self, reason):
        self.stop_reason = self.stop_reason or reason


def drive(stopper, values, monitor="valid_loss"):
    t = FakeTrainer()
    stopper.on_train_begin(t)
    for epoch, value in enumerate(values, start=1):
        t.epoch = epoch
        t.model.weight.fill_(epoch)
        stopper.on_epoch_end(t, {"epoch": epoch, monitor: value})
        if t.stop_reason:
            break
    stopper.on_train_end(t)
    return t


def test_stops_after_patience_epochs_without_improvement_and_restores_best():
    s = EarlyStopping(patience=3)
    t = drive(s, [1.0, 0.8, 0.7, 0.75, 0.71, 0.9, 0.5])
    assert (s.best_epoch, s.stopped_epoch, t.epoch) == (3, 6, 6)
    assert "did not improve" in t.stop_reason and "epoch 3" in t.stop_reason
    assert float(t.model.weight) == 3  # weights of epoch 3 restored


def test_restores_best_also_when_training_ends_without_stopping():
    s = EarlyStopping(patience=10)
    t = drive(s, [1.0, 0.5, 0.6, 0.7])
    assert t.stop_reason is None and s.stopped_epoch is None
    assert float(t.model.weight) == 2


def test_restore_best_false_keeps_last_weights():
    t = drive(EarlyStopping(patience=10, restore_best=False), [1.0, 0.5, 0.6])
    assert float(t.model.weight) == 3


@pytest.mark.parametrize("min_delta", [0.1, -0.1])
def test_min_delta_sign_does_not_matter(min_delta):
    s = EarlyStopping(patience=2, min_delta=min_delta)
    drive(s, [1.0, 0.95, 0.91, 0.85, 0.5])  # 0.95 and 0.91 are not improvements by more than 0.1
    assert (s.best_epoch, s.stopped_epoch) == (1, 3)


def test_mode_max_and_auto_for_accuracy():
    s = EarlyStopping(monitor="valid_acc", patience=1)
    assert s.mode == "max"
    drive(s, [0.5, 0.6, 0.55, 0.9], monitor="valid_acc")
    assert (s.best_epoch, s.stopped_epoch) == (2, 3)
    assert EarlyStopping(monitor="valid_acc", mode="min").mode == "min"


def test_start_from_epoch_ignores_warm_up():
    s = EarlyStopping(patience=1, start_from_epoch=3)
    drive(s, [0.1, 0.2, 0.3, 1.0, 1.1, 0.9])
    assert (s.best_epoch, s.stopped_epoch) == (4, 5)


def test_patience_zero_stops_at_first_non_improvement():
    s = EarlyStopping(patience=0)
    drive(s, [1.0, 0.9, 0.95])
    assert s.stopped_epoch == 3


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_metric_stops_and_keeps_best(bad):
    s = EarlyStopping(patience=5)
    t = drive(s, [1.0, 0.5, bad, 0.1])
    assert t.epoch == 3 and "non-finite valid_loss" in t.stop_reason
    assert float(t.model.weight) == 2


def test_unknown_monitor_says_what_is_recorded():
    with pytest.raises(KeyError, match="valid_loss"):
        drive(EarlyStopping(monitor="valid_acc"), [1.0])
    with pytest.raises(KeyError, match=r"EarlyStopping monitors 'val_loss'.* did you mean 'valid_loss'\?"):
        drive(EarlyStopping(monitor="val_loss"), [1.0])  # Keras' name


def test_plateau_scheduler_with_an_unknown_monitor_says_what_is_recorded():
    p = nn.Parameter(torch.zeros(1))
    sched = LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau(torch.optim.SGD([p], lr=0.1)), monitor="val_acc")
    with pytest.raises(KeyError, match=r"LRScheduler monitors 'val_acc'.* did you mean 'valid_acc'\?"):
        sched.on_epoch_end(FakeTrainer(), {"epoch": 1, "valid_loss": 1.0, "valid_acc": 0.5})


def test_state_round_trip_resumes_counting():
    a = EarlyStopping(patience=3)
    drive(a, [1.0, 0.5, 0.6])
    b = EarlyStopping(patience=3)
    b.load_state_dict(a.state_dict())
    t = FakeTrainer()
    t.epoch = 3  # a resumed run: on_train_begin must not reset
    b.on_train_begin(t)
    assert (b.best, b.best_epoch, b.wait) == (0.5, 2, 1)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"patience": -1}, ValueError),
        ({"mode": "up"}, ValueError),
        ({"min_delta": math.nan}, ValueError),
        ({"patience": 1.5}, TypeError),
        ({"monitor": 3}, TypeError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        EarlyStopping(**kwargs)


def test_grad_norms_are_each_layers_mean_gradient_norm_over_the_epoch():
    import torch
    from conftest import make_data

    from reglab.models import layer_grad_norms, mlp
    from reglab.train import GradNorms, fit

    class Witness:  # an independent record: layer_grad_norms at every step
        def on_train_begin(self, trainer):
            self.steps = []

        def on_after_backward(self, trainer):
            self.steps.append(layer_grad_norms(trainer.model))

        def on_epoch_end(self, trainer, record):
            names = list(self.steps[0])
            record["witness"] = [sum(s[n] for s in self.steps) / len(self.steps) for n in names]
            self.steps = []

    torch.manual_seed(0)
    model = mlp(8, 3, width=16, depth=2)
    history = fit(
        model,
        make_data(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=3,
        batch_size=40,
        callbacks=[GradNorms(), Witness()],
    )
    for record in history:
        ours = [record[f"grad_norm_{i}"] for i in (1, 2, 3)]
        assert "grad_norm_4" not in record
        assert ours == pytest.approx(record["witness"], rel=1e-6)


def test_grad_norms_show_vanishing_gradients_of_a_deep_sigmoid_net():
    import torch
    from conftest import make_data

    from reglab.models import mlp
    from reglab.train import GradNorms, fit

    norms = {}
    for activation in ("sigmoid", "relu"):
        torch.manual_seed(0)
        model = mlp(8, 3, width=32, depth=8, activation=activation)  # Xavier for sigmoid, He for relu
        record = fit(
            model,
            make_data(),
            torch.optim.SGD(model.parameters(), lr=0.01),
            epochs=1,
            batch_size=32,
            callbacks=[GradNorms()],
        )[-1]
        norms[activation] = [record[f"grad_norm_{i}"] for i in range(1, 10)]  # input layer ... output layer
    sigmoid, relu = norms["sigmoid"], norms["relu"]
    # sigmoid' <= 1/4: the gradient shrinks by a factor at every layer on its way to the input
    assert all(a < b / 3 for a, b in zip(sigmoid, sigmoid[1:])), sigmoid
    assert not all(a < b / 3 for a, b in zip(relu, relu[1:])), relu
    assert sigmoid[0] / sigmoid[-1] < 1e-3 * relu[0] / relu[-1]


class _CountSteps:
    """A duck-typed callback that counts training steps (to see that none ran)."""

    records = ()

    def __init__(self):
        self.steps = 0

    def on_batch_begin(self, trainer):
        self.steps += 1


@pytest.mark.parametrize(
    "callback, words",
    [
        (
            lambda opt: EarlyStopping(monitor="val_loss"),
            r"EarlyStopping monitors 'val_loss', which the history will not record; .*did you mean 'valid_loss'\?",
        ),
        (
            lambda opt: LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau(opt), monitor="valid_accuracy"),
            r"LRScheduler monitors 'valid_accuracy'.*did you mean 'valid_acc'\?",
        ),
        (
            lambda opt: EarlyStopping(monitor="grad_norm_3"),
            r"monitors 'grad_norm_3'.* it records epoch, .*grad_norm_1, grad_norm_2; did you mean 'grad_norm_2'\?",
        ),
    ],
)
def test_an_unknown_monitor_is_refused_before_the_first_step(toy_data, callback, words):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counter = _CountSteps()
    with pytest.raises(ValueError, match=words):
        fit(model, toy_data, opt, epochs=2, batch_size=16, callbacks=[callback(opt), GradNorms(), counter])
    assert counter.steps == 0


def test_monitors_of_declared_records_and_regression_accuracy(toy_data):
    from reglab.data import Data

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stats, norms = WeightStats(), GradNorms()
    with pytest.raises(
        ValueError,
        match="EarlyStopping monitors 'weight_l2', which WeightStats adds after it: put WeightStats before "
        "EarlyStopping",
    ):
        fit(model, toy_data, opt, epochs=2, batch_size=16, callbacks=[EarlyStopping(monitor="weight_l2"), stats])
    h = fit(
        model,
        toy_data,
        opt,
        epochs=2,
        batch_size=16,
        callbacks=[stats, norms, EarlyStopping(monitor="weight_l2", patience=5), EarlyStopping(monitor="grad_norm_2")],
    )
    loop = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "time")
    assert set(h[-1]) == {*loop, *stats.records, *norms.records}  # what is declared is what is written
    d = toy_data
    reg = Data(
        "toy-reg",
        d.x_train,
        d.y_train[:, None].float(),
        d.x_valid,
        d.y_valid[:, None].float(),
        d.x_test,
        d.y_test[:, None].float(),
        num_classes=0,
    )
    linear = nn.Linear(8, 1)
    with pytest.raises(
        ValueError,
        match=r"monitors 'valid_acc'.*\(a regression run records no accuracy\); it records epoch, train_loss, "
        r"valid_loss, lr, time; did you mean 'valid_loss'\?$",
    ):
        fit(
            linear,
            reg,
            torch.optim.SGD(linear.parameters(), lr=0.1),
            epochs=1,
            batch_size=16,
            callbacks=[EarlyStopping(monitor="valid_acc")],
        )


def test_a_callback_writing_undeclared_records_defers_the_check(toy_data):
    class Margin(Callback):  # adds a key, declares nothing: the first epoch's end tells
        def on_epoch_end(self, trainer, record):
            record["margin"] = record["valid_loss"] - record["train_loss"]

    model = nn.Sequential(nn.Linear(8, 3))
    stopper = EarlyStopping(monitor="margin", patience=1)
    h = fit(
        model,
        toy_data,
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=3,
        batch_size=16,
        callbacks=[Margin(), stopper],
    )
    assert "margin" in h[-1] and stopper.best_epoch is not None
    with pytest.raises(KeyError, match="EarlyStopping monitors 'margn'"):
        fit(
            model,
            toy_data,
            torch.optim.SGD(model.parameters(), lr=0.1),
            epochs=3,
            batch_size=16,
            callbacks=[Margin(), EarlyStopping(monitor="margn")],
        )
