"""The probes of reglab.train.probes and the per-step callbacks, on constructed cases."""

import math

import pytest
import torch
from conftest import make_data
from torch import nn

import reglab.optim as ro
from reglab.models import mlp
from reglab.train import GradNorms, fit
from reglab.train.callbacks import TargetLoss
from reglab.train.probes import StepSize, batch_stats_accuracy, dead_fraction


class _Constant(nn.Module):
    """A model whose loss has the same gradient c at every step: loss = Σ c ⊙ w (+ 0 · output)."""

    def __init__(self, c: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros_like(c))
        self.register_buffer("c", c)

    def forward(self, x):
        return torch.zeros(len(x), 3) + (self.c * self.weight).sum()


def _constant_gradient_run(optimizer, epochs=4, n=96, batch_size=32):
    c = torch.tensor([[0.5, -2.0], [3.0, 0.25]])
    model = _Constant(c)
    stepper = StepSize()
    history = fit(model, make_data(n_train=n), optimizer(model), epochs=epochs, batch_size=batch_size,
                  loss_fn=lambda out, y: out[:, 0].mean(), callbacks=[stepper])  # fmt: skip
    return c, [r["step_size"] for r in history]


def test_step_size_of_sgd_is_the_learning_rate():
    _, steps = _constant_gradient_run(lambda m: ro.SGD(m.parameters(), lr=0.05))
    assert steps == pytest.approx([0.05] * 4, rel=1e-5)


def test_step_size_of_adagrad_with_a_constant_gradient_shrinks_as_one_over_root_t():
    eps, lr = 1e-3, 0.1
    c, steps = _constant_gradient_run(lambda m: ro.Adagrad(m.parameters(), lr=lr, eps=eps, eps_in_sqrt=True))
    for epoch, got in enumerate(steps, start=1):
        t = 3 * epoch  # 96 samples / 32 a batch: the epoch's last step is step 3·epoch
        want = sorted(lr / math.sqrt(t * g**2 + eps) for g in c.flatten().tolist())  # η/√(t·g² + ε) per element
        assert got == pytest.approx(want[1], rel=1e-5)  # torch's median of 4 values: the lower middle one
    assert steps[-1] < steps[0] / 1.9  # 1/√t: from t = 3 to t = 12, half


def test_step_size_of_rmsprop_does_not_shrink_toward_zero():
    _, steps = _constant_gradient_run(lambda m: ro.RMSprop(m.parameters(), lr=0.01, alpha=0.5), epochs=6)
    assert steps[-1] == pytest.approx(steps[2], rel=1e-3)  # G forgets: a constant gradient gives a constant step


def test_dead_fraction_counts_units_negative_on_every_sample():
    layer = nn.Linear(2, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, -1.0], [0.0, 1.0], [-2.0, 0.0]]))
        layer.bias.copy_(torch.tensor([0.0, -0.1, 0.0, 0.0]))
    x = torch.rand(50, 2) + 0.01  # positive inputs: units 1 and 3 are never positive
    for act in (nn.ReLU(), nn.LeakyReLU(0.1)):
        assert dead_fraction(nn.Sequential(layer, act, nn.Linear(4, 2)), x) == 0.5
    assert dead_fraction(nn.Sequential(layer, nn.Tanh()), x) is None


def test_batch_stats_accuracy_uses_each_batch_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = mlp(8, 3, width=16, depth=1, norm="batch", dropout=0.5)
    data = make_data()
    fit(model, data, torch.optim.Adam(model.parameters(), 1e-2), epochs=3, batch_size=16)
    running = [b.clone() for b in model.buffers()]
    got = batch_stats_accuracy(model, data.x_test, data.y_test, batch_size=8)
    probe = __import__("copy").deepcopy(model).train()
    probe[-2].eval()  # dropout off (it is the layer before the read-out)
    want = sum(int((probe(data.x_test[i : i + 8]).argmax(1) == data.y_test[i : i + 8]).sum()) for i in range(0, 32, 8))
    assert got == want / 32
    assert all(torch.equal(a, b) for a, b in zip(running, model.buffers()))
    assert batch_stats_accuracy(mlp(8, 3, width=16, depth=1), data.x_test, data.y_test, 8) is None


def test_grad_norms_per_step_are_the_global_norm_of_each_step():
    torch.manual_seed(0)
    model = mlp(8, 3, width=16, depth=2)
    seen = []

    class Witness:
        records = ()

        def on_after_backward(self, trainer):
            seen.append(math.sqrt(sum(float(w.grad.norm()) ** 2 for w in [model[1].weight, model[3].weight,
                                                                             model[5].weight])))  # fmt: skip

    history = fit(model, make_data(), torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, batch_size=40,
                  callbacks=[GradNorms(per_step=True), Witness()])  # fmt: skip
    steps = [v for r in history for v in r["grad_norm_steps"]]
    assert len(history[0]["grad_norm_steps"]) == 3 and steps == pytest.approx(seen, rel=1e-5)
    other = mlp(8, 3)
    once = fit(other, make_data(), torch.optim.SGD(other.parameters(), lr=0.1), epochs=1, batch_size=40,
               callbacks=[GradNorms()])  # fmt: skip
    assert "grad_norm_steps" not in once[0]


def test_target_loss_stops_once_the_training_loss_is_low_enough():
    torch.manual_seed(0)
    model = mlp(8, 3, width=32)
    history = fit(model, make_data(), torch.optim.Adam(model.parameters(), 1e-2), epochs=200, batch_size=32,
                  callbacks=[TargetLoss(0.5)])  # fmt: skip
    assert history[-1]["train_loss"] <= 0.5 < min(r["train_loss"] for r in history[:-1])
    with pytest.raises(ValueError, match="target"):
        TargetLoss(-1.0)
