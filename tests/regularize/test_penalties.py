"""Penalties against float64 references; weight statistics."""

import numpy as np
import pytest
import torch
from torch import nn

import reglab.optim as ro
from reglab.models import mlp
from reglab.regularize import Penalty, l1_penalty, l2_penalty, penalized, weight_stats


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(4 * 6, 3)).double()


def test_penalized_are_linear_and_conv_weights_only():
    m = _model()
    assert [p.shape for p in penalized(m)] == [m[0].weight.shape, m[3].weight.shape]


@pytest.mark.parametrize("l1, l2", [(0.3, 0.0), (0.0, 0.7), (0.3, 0.7)], ids=["l1", "l2", "elastic"])
def test_penalty_value_and_gradient_equal_float64_reference(l1, l2):
    m = _model()
    ws = [p.detach().numpy().copy() for p in penalized(m)]
    want = sum(l1 * np.abs(w).sum() + 0.5 * l2 * (w**2).sum() for w in ws)
    value = Penalty(l1=l1, l2=l2)(m)
    assert value.item() == pytest.approx(want, rel=1e-14)
    value.backward()
    for p, w in zip(penalized(m), ws):
        np.testing.assert_allclose(p.grad.numpy(), l1 * np.sign(w) + l2 * w, rtol=1e-14)
    assert m[0].bias.grad is None and m[1].weight.grad is None, "biases and norms are not penalized"


def test_functional_forms():
    w = [torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)]
    assert float(l1_penalty(w, 0.5)) == pytest.approx(1.75)
    assert float(l2_penalty(w, 0.5)) == pytest.approx(0.25 * 5.25)
    for penalty in (l1_penalty, l2_penalty):
        assert torch.equal(penalty([], 0.5), torch.zeros(()))
        for alpha, error in ((-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError)):
            with pytest.raises(error, match="alpha"):
                penalty(w, alpha)


def test_l2_penalty_with_sgd_equals_sgd_weight_decay():
    """(α/2)‖W‖² in the loss == torch-convention weight_decay α, on the penalized weights."""
    x = torch.randn(32, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(2))

    def train(model, opt, penalty=None):
        for _ in range(30):
            loss = nn.functional.cross_entropy(model(x), y) + (penalty(model) if penalty else 0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.manual_seed(0)
    a = mlp(6, 3, width=8, depth=1).double()
    torch.manual_seed(0)
    b = mlp(6, 3, width=8, depth=1).double()
    with_penalty = train(a, ro.SGD(a.parameters(), lr=0.1), Penalty(l2=0.05))
    with_decay = train(b, ro.SGD(ro.decay_groups(b, 0.05), lr=0.1))
    torch.testing.assert_close(with_penalty, with_decay, rtol=1e-12, atol=1e-14)


def test_weight_stats():
    m = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[0.0, 1e-7], [1.0, -2.0]]))
        m[1].weight.copy_(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    s = weight_stats(m)
    assert s["zero_frac"] == 3 / 8 and s["tiny_frac"] == 4 / 8
    assert s["first_zero_frac"] == 1 / 4 and s["first_tiny_frac"] == 2 / 4
    assert s["weight_l1"] == pytest.approx(10 + 1e-7) and s["weight_l2"] == pytest.approx(30**0.5)
    with pytest.raises(ValueError, match="tiny must be > 0, got -1.0"):
        weight_stats(m, tiny=-1.0)


def test_one_penalty_serves_several_models():
    """A Penalty reused on a second model penalizes that model's weights, not the first's."""
    penalty = Penalty(l1=0.3, l2=0.7)
    first, second = _model(), nn.Sequential(nn.Linear(5, 2)).double()
    penalty(first)
    value = penalty(second)
    w = second[0].weight.detach()
    assert value.item() == pytest.approx(float(0.3 * w.abs().sum() + 0.35 * (w * w).sum()), rel=1e-14)
    value.backward()
    assert second[0].weight.grad is not None
    with pytest.raises(TypeError, match=r"Penalty takes the model \(a torch.nn.Module\), got Tensor"):
        penalty(torch.zeros(3))
    with pytest.raises(TypeError, match=r"Penalty takes the model .* got generator .*not model.parameters\(\)"):
        penalty(first.parameters())
    for fn in (penalized, weight_stats):
        with pytest.raises(TypeError, match=f"{fn.__name__} takes the model"):
            fn([first[0].weight])
