"""reglab.regularize.dropout against a float64 reference drawn from the same generator state."""

import math

import pytest
import torch
from torch import nn

from reglab.regularize.dropout import Dropout, dropout_mask


def _reference(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """x · 1[u ≥ p] / (1 − p) in float64, u the float32 uniforms of the default generator seeded
    ``seed``, in x's order."""
    torch.manual_seed(seed)
    u = torch.rand(x.shape)
    return x.double() * (u >= p).double() / (1 - p)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_equals_the_float64_reference_and_its_gradient_is_the_mask(p):
    x = torch.randn(64, 33, requires_grad=True)
    expected = _reference(x.detach(), p, seed=3)
    torch.manual_seed(3)
    y = Dropout(p).train()(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), expected, rtol=1.2e-7, atol=0)  # two float32 roundings: 1/(1-p), x·m
    y.sum().backward()
    kept = expected != 0
    torch.testing.assert_close(x.grad, torch.where(kept, 1 / (1 - p), 0.0).float())


def test_dropout_drops_about_p_of_the_units_and_keeps_the_mean():
    p, n = 0.3, 200_000
    torch.manual_seed(0)
    y = Dropout(p).train()(torch.ones(n))
    dropped = int((y == 0).sum())
    assert abs(dropped - n * p) < 4 * math.sqrt(n * p * (1 - p))
    assert abs(float(y.double().mean()) - 1) < 4 * math.sqrt(p / (1 - p) / n)  # E[y] = x


def test_dropout_is_the_identity_in_evaluation_and_at_p_0_and_drops_all_at_p_1():
    x = torch.randn(10, 7)
    assert torch.equal(Dropout(0.4).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_dropout_in_place_writes_its_input():
    x = torch.randn(20, 9)
    torch.manual_seed(1)
    expected = Dropout(0.25).train()(x)
    torch.manual_seed(1)
    y = Dropout(0.25, inplace=True).train()(x)
    assert y.data_ptr() == x.data_ptr() and torch.equal(x, expected)


def test_the_mask_is_drawn_in_float32_for_a_bfloat16_input():
    """bf16 has 8 bits of mantissa: a mask drawn in it would round p to a multiple of 1/256; the
    decision is the float32 draw's, the result in x's dtype."""
    x = torch.ones(5000, dtype=torch.bfloat16)
    torch.manual_seed(2)
    m = dropout_mask(x, 0.1)
    torch.manual_seed(2)
    keep = torch.rand(5000) >= 0.1
    assert m.dtype == torch.bfloat16 and torch.equal(m != 0, keep)
    assert torch.equal(m[keep], torch.full_like(m[keep], 1 / 0.9))


def test_a_mask_drawn_slice_by_slice_from_generators_is_each_slice_s_own_draw():
    """A stacked model's mask: copy s's slice drawn from its own generator equals the mask that
    generator draws for the copy's activations alone (``reglab.train.stacked_model``)."""
    x = torch.randn(3, 16, 8)
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    u = torch.empty(x.shape)
    for row, g in zip(u, gens):
        row.uniform_(generator=g)
    stacked = dropout_mask(x, 0.5, out=u)
    for s in range(3):
        assert torch.equal(stacked[s], dropout_mask(x[s], 0.5, torch.Generator().manual_seed(s)))


def test_dropout_off_the_cpu_is_torch_s_and_the_module_is_an_nn_dropout():
    drop = Dropout(0.5)
    assert isinstance(drop, nn.Dropout) and drop.p == 0.5
    if torch.cuda.is_available():  # pragma: no cover - no CUDA in CI
        x = torch.ones(1000, device="cuda")
        y = drop.train()(x)
        assert y.device.type == "cuda" and set(y.unique().tolist()) <= {0.0, 2.0}
