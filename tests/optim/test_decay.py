"""Weight decay, L2 vs decoupled decay, L1 and the proximal step (TECHNIQUES.md section 4)."""

import numpy as np
import pytest
import torch
from torch import nn

import reglab.optim as ro
from reglab.models import mlp


def _data(seed=0, n=64, d=10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=g)


def _train(model, opt, penalty=None, steps=100):
    x, y = _data()
    for t in range(steps):
        idx = slice((t * 16) % 64, (t * 16) % 64 + 16)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        if penalty is not None:
            loss = loss + penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _model():
    torch.manual_seed(0)
    return mlp(10, 3, width=16, depth=1).double()


def test_sgd_l2_penalty_equals_weight_decay_2_lambda():
    lam = 0.01
    m1, m2 = _model(), _model()
    with_penalty = _train(
        m1, ro.SGD(m1.parameters(), lr=0.1), penalty=lambda m: lam * sum((p**2).sum() for p in m.parameters())
    )
    with_decay = _train(m2, ro.SGD(m2.parameters(), lr=0.1, weight_decay=2 * lam))
    torch.testing.assert_close(with_penalty, with_decay, rtol=1e-12, atol=1e-14)


def test_adam_coupled_l2_and_adamw_differ():
    m1, m2, m3 = _model(), _model(), _model()
    coupled = _train(m1, ro.Adam(m1.parameters(), lr=0.01, weight_decay=0.1))
    decoupled = _train(m2, ro.AdamW(m2.parameters(), lr=0.01, weight_decay=0.1))
    none = _train(m3, ro.Adam(m3.parameters(), lr=0.01))
    assert (coupled - decoupled).abs().max() > 0.01
    assert decoupled.norm() < none.norm(), "decoupled decay shrinks the weights"


def test_adamw_is_adam_scaling_then_decay():
    """torch.optim.AdamW == chain(scale_by_adam, add_decayed_weights): decay after the moments."""
    m1, m2 = _model(), _model()
    ref = _train(m1, torch.optim.AdamW(m1.parameters(), lr=0.01, weight_decay=0.1))
    chained = ro.Optimizer(m2.parameters(), ro.chain(ro.scale_by_adam(), ro.add_decayed_weights(0.1)), lr=0.01)
    torch.testing.assert_close(_train(m2, chained), ref, rtol=1e-10, atol=1e-12)
    m3 = _model()
    before = ro.Optimizer(m3.parameters(), ro.chain(ro.add_decayed_weights(0.1), ro.scale_by_adam()), lr=0.01)
    assert (_train(m3, before) - ref).abs().max() > 0.01, "decay before the moments is coupled L2, not AdamW"


def test_decoupled_sgd_with_momentum_matches_reference():
    lr, beta, lam = 0.1, 0.9, 0.05
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((30, 5))
    w_ref, a = np.ones(5), np.zeros(5)
    for t, g in enumerate(grads):
        a = g if t == 0 else beta * a + g
        w_ref = w_ref - lr * (a + lam * w_ref)
    w = torch.ones(5, dtype=torch.float64, requires_grad=True)
    opt = ro.SGD([w], lr=lr, momentum=beta, weight_decay=lam, decoupled=True)
    for g in grads:
        w.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(w.detach().numpy(), w_ref, rtol=1e-12)


def test_weight_decay_schedule():
    lr, lam = 0.1, 0.2
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt = ro.SGD([w], lr=lr, weight_decay=lam, decoupled=True, weight_decay_schedule=lambda t: 1 / t)
    ref = np.ones(3)
    for t in range(1, 6):
        w.grad = torch.zeros(3, dtype=torch.float64)
        opt.step()
        ref = ref - lr * lam / t * ref
    np.testing.assert_allclose(w.detach().numpy(), ref, rtol=1e-13)


def test_l1_subgradient_and_proximal_single_step():
    lr, alpha = 0.1, 0.5
    w0 = np.array([1.0, 0.03, -0.02, -2.0, 0.0])
    g = np.array([0.1, 0.2, -0.3, 0.4, 0.01])
    w = torch.tensor(w0, requires_grad=True)
    w.grad = torch.tensor(g)
    ro.SGD([w], lr=lr, l1=alpha).step()
    np.testing.assert_allclose(w.detach().numpy(), w0 - lr * (g + alpha * np.sign(w0)), rtol=1e-15)

    w = torch.tensor(w0, requires_grad=True)
    w.grad = torch.tensor(g)
    ro.SGD([w], lr=lr, l1_proximal=alpha).step()
    z = w0 - lr * g
    np.testing.assert_array_equal(w.detach().numpy(), np.sign(z) * np.maximum(np.abs(z) - lr * alpha, 0))
    assert (w.detach() == 0).sum() == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_proximal_step_is_the_soft_threshold_on_every_tensor(dtype):
    """Several tensors at once, values on both sides of ±ηα and at it: the same numbers as
    ``sign(z) · max(|z| − ηα, 0)`` computed in NumPy in the tensors' own precision."""
    lr, alpha = 0.1, 0.25
    g = torch.Generator().manual_seed(3)
    params = [torch.randn(shape, generator=g, dtype=dtype) * 0.05 for shape in [(7, 5), (5,), (3, 2, 4)]]
    params[1][:2] = torch.tensor([lr * alpha, -lr * alpha], dtype=dtype)
    expected = []
    for p in params:
        p.requires_grad_()
        p.grad = torch.zeros_like(p)
        z = p.detach().numpy().copy()
        t = z.dtype.type(lr * alpha)
        expected.append(np.sign(z) * np.maximum(np.abs(z) - t, z.dtype.type(0)))
    ro.SGD(params, lr=lr, l1_proximal=alpha).step()
    for p, e in zip(params, expected):
        np.testing.assert_array_equal(p.detach().numpy(), e)
    zeros = sum(int((p == 0).sum()) for p in params)
    assert 0 < zeros < sum(p.numel() for p in params)


def test_proximal_l1_gives_exact_zeros_where_subgradient_gives_none():
    """Sparse regression: 5 of 50 true weights are non-zero."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 50, generator=g, dtype=torch.float64)
    w_true = torch.zeros(50, dtype=torch.float64)
    w_true[:5] = torch.tensor([2.0, -3.0, 1.5, 4.0, -2.5], dtype=torch.float64)
    y = x @ w_true + 0.1 * torch.randn(200, generator=g, dtype=torch.float64)

    def fit(**options):
        w = torch.zeros(50, dtype=torch.float64, requires_grad=True)
        opt = ro.SGD([w], lr=0.05, **options)
        for _ in range(500):
            opt.zero_grad()
            (0.5 * ((x @ w - y) ** 2).mean()).backward()
            opt.step()
        return w.detach()

    prox, sub = fit(l1_proximal=0.1), fit(l1=0.1)
    prox_zero, sub_zero = float((prox == 0).double().mean()), float((sub == 0).double().mean())
    assert prox_zero >= 0.8 and sub_zero == 0.0, (prox_zero, sub_zero)
    assert (prox[:5] != 0).all(), "the true support survives"
    assert float(sub[5:].abs().max()) > 0, "subgradient weights hover around zero"


def test_decay_groups_exclude_biases_norms_and_names():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model.register_parameter("embedding_table", nn.Parameter(torch.zeros(3)))
    decay, no_decay = ro.decay_groups(model, 0.05, exclude=("embedding",))
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == ids([model[0].weight, model[3].weight])
    assert ids(no_decay["params"]) == ids(
        [model[0].bias, model[1].weight, model[1].bias, model[3].bias, model.embedding_table]
    )
    opt = ro.AdamW([decay, no_decay], lr=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_decay_groups_checks_its_arguments():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        ro.decay_groups(model, -0.1)
    with pytest.raises(
        ValueError, match=r"exclude: 'embeding' is in no parameter's name \(0.weight, 0.bias, 1.weight, 1.bias\)"
    ):
        ro.decay_groups(model, 0.1, exclude=("embeding",))
    decay, no_decay = ro.decay_groups(model, 0.1, exclude="1.")  # one name, not its characters
    assert [p.shape for p in decay["params"]] == [(8, 4)] and len(no_decay["params"]) == 3
    with pytest.raises(TypeError, match=r"exclude must be a name or a sequence of names, got 3 \(int\)"):
        ro.decay_groups(model, 0.1, exclude=3)
    with pytest.raises(TypeError, match=r"decay_groups takes the model .* got generator .*not model.parameters\(\)"):
        ro.decay_groups(model.parameters(), 0.1)


def test_decay_groups_skip_frozen():
    model = nn.Linear(3, 3)
    model.weight.requires_grad_(False)
    decay, no_decay = ro.decay_groups(model, 0.1)
    assert decay["params"] == [] and len(no_decay["params"]) == 1


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "adagrad", "adadelta"])
def test_decoupled_available_for_every_optimizer(name):
    w = torch.ones(4, dtype=torch.float64, requires_grad=True)
    opt = ro.OPTIMIZERS[name]([w], lr=0.1, weight_decay=0.5, decoupled=True)
    w.grad = torch.zeros(4, dtype=torch.float64)
    opt.step()  # zero gradient: only the decay moves W
    torch.testing.assert_close(w.detach(), torch.full((4,), 1 - 0.1 * 0.5, dtype=torch.float64), rtol=1e-12, atol=0)
