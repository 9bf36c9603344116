"""The recurrent model kinds (rnn, gru; reglab.recurrent) and the leaky ReLU slope."""

import math

import pytest
import torch
from conftest import make_data
from torch import nn

import reglab.optim as ro
from reglab.errors import ReglabError
from reglab.lab.recipe import Recipe
from reglab.models import build_model, mlp, rnn
from reglab.train import GradNorms, fit


@pytest.mark.parametrize(("cell", "norm"), [("rnn", "none"), ("rnn", "layer"), ("gru", "none")])
def test_output_shapes_for_signals_with_one_or_several_channels(cell, norm):
    for shape in ((40,), (3, 40)):
        model = rnn(shape, 10, width=16, depth=2, cell=cell, norm=norm, init="auto")
        assert model(torch.randn(5, *shape)).shape == (5, 10)


def test_layer_norm_rnn_follows_its_equation():
    torch.manual_seed(0)
    model = rnn((6,), 2, width=4, depth=1, norm="layer", init="auto")
    x = torch.randn(3, 6)
    W = model.recurrent.inputs[0].weight
    U = model.recurrent.hidden[0].weight
    ln = model.recurrent.norms[0]
    h = torch.zeros(3, 4)
    for t in range(6):
        a = x[:, t : t + 1] @ W.T + h @ U.T
        a = (a - a.mean(1, keepdim=True)) / torch.sqrt(a.var(1, unbiased=False, keepdim=True) + 1e-5)
        h = torch.tanh(a * ln.weight + ln.bias)
    torch.testing.assert_close(model(x), model.head(h))


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_a_few_steps_lower_the_loss_and_record_gradient_norms(kind):
    signals = make_data(features=12, shape=(12,))
    torch.manual_seed(0)
    model = build_model(Recipe().updated({"model.kind": kind, "model.width": 16, "model.depth": 1}).model,
                        signals.input_shape, signals.num_classes)  # fmt: skip
    x, y = signals.x_train[:64], signals.y_train[:64]
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    record = fit(model, signals, torch.optim.Adam(model.parameters(), 1e-3), epochs=1, batch_size=100,
                 callbacks=[GradNorms()])[-1]  # fmt: skip
    norms = [v for k, v in record.items() if k.startswith("grad_norm_")]
    assert len(norms) == 3 and all(v > 0 for v in norms)  # input matrix, recurrent matrix, read-out


def test_clipping_keeps_a_deliberately_exploding_rnn_finite():
    torch.manual_seed(0)
    x, y = torch.randn(32, 50), torch.randint(0, 2, (32,))

    def train(clip):  # plain SGD at η = 1 on a 50-step tanh RNN: its gradients blow up
        torch.manual_seed(1)
        model = rnn((50,), 2, width=32, cell="rnn", init="auto")
        opt = ro.SGD(model.parameters(), lr=1.0, clip_norm=clip)
        losses, norms = [], []
        for _ in range(20):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])))
            opt.step()
            losses.append(loss.item())
        return losses, norms

    losses, norms = train(None)
    # diverged: far above chance, with gradient norms ten times the clipping threshold below at least
    # once (the path is chaotic: its peak norm is over 50 on AMD's Zen CPUs, 32 on an Intel Xeon)
    assert max(norms) > 10 * 1.0 and max(losses[-5:]) > 5 * math.log(2)
    losses, norms = train(1.0)
    assert all(math.isfinite(v) for v in losses) and max(losses[-5:]) < 1.0  # bounded, at about chance


def test_recurrent_kinds_refuse_images_and_norms_they_do_not_take():
    with pytest.raises(ReglabError, match="reads signals.*images"):
        rnn((1, 28, 28), 10)
    with pytest.raises(ReglabError, match="gru takes norm none"):
        rnn((40,), 10, cell="gru", norm="layer")
    for kind, norm in [("rnn", "batch"), ("gru", "layer"), ("rnn", "group")]:
        with pytest.raises(ReglabError, match=f"model.norm = '{norm}'"):
            Recipe().updated({"model.kind": kind, "model.norm": norm})
    with pytest.raises(ReglabError, match="model.depth must be >= 1"):
        Recipe().updated({"model.kind": "rnn", "model.depth": 0})


def test_leaky_relu_slope_is_the_recipes():
    model = build_model(Recipe().updated({"model.activation": "leaky_relu", "model.slope": 0.2}).model, (8,), 3)
    slopes = [m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes == [0.2, 0.2]
    assert mlp(8, 3, activation="leaky_relu")[2].negative_slope == 0.01
    with pytest.raises(ReglabError, match="model.slope"):
        Recipe().updated({"model.slope": 1.5})


def test_adadelta_runs_at_eta_one_unless_an_lr_is_given():
    assert Recipe().updated({"optimizer.name": "adadelta"}).optimizer.lr == 1.0
    assert Recipe.from_dict({"optimizer": {"name": "adadelta"}}).optimizer.lr == 1.0
    assert Recipe().updated({"optimizer.name": "adadelta", "optimizer.lr": 0.5}).optimizer.lr == 0.5
    assert Recipe().updated({"optimizer.lr": 0.01}).updated({"optimizer.name": "adadelta"}).optimizer.lr == 0.01
    back = Recipe().updated({"optimizer.name": "adadelta"}).updated({"optimizer.name": "adam"})
    assert back.optimizer.lr == 1e-3  # Adam's own again, not Adadelta's 1
    assert Recipe().updated({"optimizer.name": "sgd"}).optimizer.lr == 1e-3  # unchanged for the others at 1e-3
