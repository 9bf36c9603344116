"""The layers reglab builds models from follow TECHNIQUES.md sections 8-10."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from reglab.lab.recipe import ModelConfig
from reglab.matmul import Linear
from reglab.models import build_model, cnn, initialize, layer_grad_norms, mlp


@pytest.mark.parametrize("norm", ["none", "batch", "layer", "group"])
def test_mlp_shapes_and_blocks(norm):
    m = mlp(40, 10, width=32, depth=3, norm=norm, dropout=0.1)
    assert m(torch.randn(5, 1, 40)).shape == (5, 10)
    assert sum(isinstance(x, nn.Linear) for x in m) == 4
    assert sum(isinstance(x, nn.Dropout) for x in m) == 3


@pytest.mark.parametrize("shape", [(1, 40), (40,), (1, 28, 28), (3, 8, 8)])
@pytest.mark.parametrize("norm", ["none", "batch", "layer", "group", "instance"])
def test_cnn_shapes(shape, norm):
    m = cnn(shape, 7, width=16, depth=2, norm=norm)
    assert m(torch.randn(4, *shape)).shape == (4, 7)
    convs = [x for x in m.modules() if isinstance(x, (nn.Conv1d, nn.Conv2d))]
    assert len(convs) == 2 and isinstance(convs[0], nn.Conv2d if len(shape) == 3 else nn.Conv1d)


def test_depth_zero_is_logistic_regression():
    m = mlp(64, 10, depth=0)
    assert [type(x) for x in m] == [nn.Flatten, Linear] and isinstance(m[1], nn.Linear)


def test_build_model_resolves_width_and_auto_init():
    m = build_model(ModelConfig(kind="cnn"), (1, 40), 10)
    assert next(x for x in m if isinstance(x, nn.Conv1d)).out_channels == 32
    torch.manual_seed(0)
    tanh = build_model(ModelConfig(activation="tanh", width=1000), (1000,), 10)
    w = tanh[1].weight.detach()  # 1000 x 1000, Xavier uniform: bound sqrt(6 / 2000)
    assert float(w.abs().max()) <= math.sqrt(6 / 2000) and float(w.abs().max()) > 0.95 * math.sqrt(6 / 2000)
    assert float(tanh[1].bias.detach().abs().max()) == 0


@pytest.mark.parametrize(
    "init, n_in, n_out, bound, std",
    [
        ("xavier_uniform", 600, 400, math.sqrt(6 / 1000), math.sqrt(6 / 1000) / math.sqrt(3)),
        ("xavier_normal", 600, 400, None, math.sqrt(2 / 1000)),
        ("he_uniform", 600, 400, math.sqrt(6 / 600), math.sqrt(6 / 600) / math.sqrt(3)),
        ("he_normal", 600, 400, None, math.sqrt(2 / 600)),
    ],
)
def test_init_bounds_and_variance(init, n_in, n_out, bound, std):
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(n_in, n_out))
    initialize(layer, init)
    w = layer[0].weight.detach().double().numpy()
    assert abs(w.std() / std - 1) < 0.01  # 240,000 samples: the std is known to < 1%
    assert abs(w.mean()) < 0.01 * std
    if bound is not None:
        assert w.max() <= bound and w.min() >= -bound and w.max() > 0.99 * bound


def test_dropout_drops_about_np_units_and_scales_survivors():
    torch.manual_seed(0)
    p, n = 0.3, 100_000
    drop = mlp(1, 1, width=n, depth=1, dropout=p)[3]
    x = torch.ones(1, n)
    y = drop.train()(x)
    dropped = int((y == 0).sum())
    assert abs(dropped - n * p) < 4 * math.sqrt(n * p * (1 - p))
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
    assert torch.equal(drop.eval()(x), x)


def _bn_reference(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta, mu, var


def test_batch_norm_matches_equation_and_uses_running_stats_in_eval():
    torch.manual_seed(0)
    m = mlp(6, 2, width=6, depth=1, norm="batch")
    bn = m[2]
    assert isinstance(bn, nn.BatchNorm1d) and bn.eps == 1e-5
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(32, 6, dtype=torch.float64) * 3 + 1
    bn.double().train()
    expected, mu, var = _bn_reference(x.numpy(), bn.weight.detach().numpy(), bn.bias.detach().numpy())
    np.testing.assert_allclose(bn(x).detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    # running averages: 0.9 * initial + 0.1 * batch (unbiased variance, PyTorch's convention)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mu, rtol=1e-10)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var * 32 / 31, rtol=1e-10)
    bn.eval()
    z = torch.randn(4, 6, dtype=torch.float64)
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    want = bn.weight.detach().numpy() * (z.numpy() - rm) / np.sqrt(rv + 1e-5) + bn.bias.detach().numpy()
    np.testing.assert_allclose(bn(z).detach().numpy(), want, rtol=1e-10)


def _normalize(x, axes, eps=1e-5):
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


@pytest.mark.parametrize(
    "norm, axes",
    [
        ("layer", (1, 2)),  # per sample, across channels and positions
        ("instance", (2,)),  # per sample and channel
        ("group", None),  # per sample and group of channels
    ],
)
def test_cnn_norms_follow_their_equations(norm, axes):
    m = cnn((1, 12), 2, width=8, depth=1, norm=norm, groups=2).double()
    layer = m[1]
    x = torch.randn(5, 8, 12, dtype=torch.float64) * 2 + 3
    got = layer.train()(x).detach().numpy()
    if axes is None:
        want = _normalize(x.numpy().reshape(5, 2, 4, 12), (2, 3)).reshape(5, 8, 12)
    else:
        want = _normalize(x.numpy(), axes)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)  # gamma = 1, beta = 0 at init


def test_layer_norm_mlp_is_per_sample():
    m = mlp(10, 2, width=10, depth=1, norm="layer").double()
    x = torch.randn(3, 10, dtype=torch.float64) * 5
    np.testing.assert_allclose(m[2](x).detach().numpy(), _normalize(x.numpy(), (1,)), rtol=1e-9, atol=1e-9)


def test_mlp_refuses_instance_norm():
    with pytest.raises(ValueError, match="instance norm needs spatial"):
        mlp(4, 2, norm="instance")


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"width": 0}, ValueError, "width must be >= 1, got 0"),
        ({"width": 2.5}, TypeError, "width must be an integer"),
        ({"depth": -1}, ValueError, "depth must be >= 0"),
        ({"activation": "gelu"}, ValueError, "activation must be one of"),
        ({"norm": "weight"}, ValueError, "norm must be one of"),
        ({"dropout": 1.0}, ValueError, "dropout must be in [0, 1)"),
        ({"norm": "group", "width": 10, "groups": 4}, ValueError, "groups must divide width"),
        ({"n_out": 0}, ValueError, "n_out must be >= 1"),
    ],
)
def test_builders_refuse_bad_arguments_naming_them(kwargs, error, words):
    kwargs = {"n_out": 3, **kwargs}
    for build in (lambda **kw: mlp(4, **kw), lambda **kw: cnn((1, 8, 8), **kw)):
        with pytest.raises(error) as info:
            build(**kwargs)
        assert words in str(info.value)
    with pytest.raises(ValueError, match="init must be one of"):
        initialize(mlp(4, 2), "orthogonal")


@pytest.mark.parametrize("init", ["xavier_uniform", "he_normal", "auto"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_builders_take_init_and_match_initialize(kind, init):
    build = (
        (lambda **kw: mlp(64, 10, width=48, **kw))
        if kind == "mlp"
        else (lambda **kw: cnn((1, 8, 8), 10, width=48, **kw))
    )
    torch.manual_seed(0)
    built = build(activation="tanh", init=init)
    torch.manual_seed(0)
    by_hand = build(activation="tanh")  # PyTorch's default layer init, then the named one
    initialize(by_hand, "xavier_uniform" if init == "auto" else init)  # auto: Xavier for tanh
    for a, b in zip(built.parameters(), by_hand.parameters(), strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    default = build(activation="tanh")
    torch.manual_seed(0)
    assert all(
        torch.equal(a, b) for a, b in zip(default.parameters(), build(activation="tanh", init=None).parameters())
    )
    first = next(m for m in default.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    assert float(first.bias.detach().abs().max()) > 0  # None leaves PyTorch's init (biases not zeroed)
    with pytest.raises(
        ValueError,
        match="init must be one of auto, he_normal, he_uniform, xavier_normal, xavier_uniform; got .orthogonal.",
    ):
        build(init="orthogonal")


def test_build_model_equals_builder_with_the_recipe_init():
    torch.manual_seed(1)
    a = build_model(ModelConfig(width=32, init="he_normal"), (1, 40), 10)
    torch.manual_seed(1)
    b = mlp(40, 10, width=32, init="he_normal")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize(
    "shape, error, words",
    [
        (40, TypeError, "input_shape must be the shape of one sample, such as (1, 40)"),
        ("1x28x28", TypeError, "input_shape must be the shape of one sample"),
        ((1, 0), ValueError, "input_shape[1] must be >= 1, got 0"),
        ((1, 28.0, 28), TypeError, "input_shape[1] must be an integer"),
        ((1, 2, 8, 8), ValueError, "cnn needs inputs of shape (C, L) or (C, H, W)"),
    ],
)
def test_cnn_refuses_a_bad_input_shape(shape, error, words):
    with pytest.raises(error) as info:
        cnn(shape, 10)
    assert words in str(info.value)
    assert cnn(torch.Size([1, 8, 8]), 10)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_layer_grad_norms():
    m = mlp(4, 2, width=3, depth=2)
    m(torch.randn(5, 4)).sum().backward()
    norms = layer_grad_norms(m)
    assert list(norms) == ["1", "3", "5"]
    assert norms["5"] == pytest.approx(float(m[5].weight.grad.norm()))
