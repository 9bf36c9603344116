"""Gradient clipping and gradient noise (TECHNIQUES.md section 6)."""

import math

import numpy as np
import pytest
import torch

import reglab.optim as ro


def _grads():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64) * 10]


def _step(**options):
    grads = _grads()
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    ro.SGD(params, lr=1.0, **options).step()
    return [-p.detach() for p in params], grads  # the applied update u = -ΔW with lr = 1


def test_clip_by_global_norm_equation():
    (u, grads) = _step(clip_norm=2.0)
    norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
    assert norm > 2.0
    for a, g in zip(u, grads):
        np.testing.assert_allclose(a.numpy(), g.numpy() * 2.0 / norm, rtol=1e-14)
    assert math.sqrt(sum(float((a**2).sum()) for a in u)) == pytest.approx(2.0, rel=1e-14)
    # below the threshold nothing changes
    (u, grads) = _step(clip_norm=1e6)
    for a, g in zip(u, grads):
        assert torch.equal(a, g)


def test_clip_by_global_norm_agrees_with_torch_utility():
    grads = _grads()
    ref = [g.clone() for g in grads]
    torch.nn.utils.clip_grad_norm_([torch.nn.Parameter(torch.zeros_like(g)) for g in grads], 2.0)  # API smoke
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, ref):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, 2.0)  # c / (||g|| + 1e-6)
    u, _ = _step(clip_norm=2.0)
    for a, p in zip(u, params):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=0)


def test_clip_by_value():
    u, grads = _step(clip_value=0.5)
    for a, g in zip(u, grads):
        assert torch.equal(a, g.clamp(-0.5, 0.5))


def test_clipping_does_not_touch_the_gradients():
    grads = _grads()
    p = torch.zeros_like(grads[1], requires_grad=True)
    p.grad = grads[1].clone()
    ro.SGD([p], lr=1.0, clip_norm=0.1, clip_value=0.01).step()
    assert torch.equal(p.grad, grads[1])


def test_gradient_noise_variance_and_determinism():
    eta, gamma = 0.5, 0.55
    opt_transform = ro.add_noise(eta, gamma, seed=3)
    p = torch.zeros(200_000, dtype=torch.float64)
    g = torch.zeros_like(p)
    for t in (1, 10):
        ctx = ro.Context([p], [g], [t], {"lr": 1.0})
        noisy = opt_transform.update([g], {}, ctx)[0]
        assert float(noisy.var()) == pytest.approx(eta / (1 + t) ** gamma, rel=0.02)
        again = ro.add_noise(eta, gamma, seed=3).update([g], {}, ctx)[0]
        assert torch.equal(noisy, again), "noise is a function of (seed, step, parameter)"
    other = ro.add_noise(eta, gamma, seed=4).update([g], {}, ro.Context([p], [g], [1], {}))[0]
    assert not torch.equal(other, opt_transform.update([g], {}, ro.Context([p], [g], [1], {}))[0])
