"""Gradient clipping and gradient noise (TECHNIQUES.md section 6)."""

import copy
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


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("cls", ["SGD", "Adam"])
def test_clip_norm_spans_every_parameter_group(cls, fused):
    """The global norm of clip_norm is over all of an optimizer's groups, as
    torch.nn.utils.clip_grad_norm_ over model.parameters() is: two groups (weights that decay and
    biases that do not, as a recipe with weight decay builds) are clipped together, not each to c."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
    groups = ro.decay_groups(ours, 1e-2)
    opt = getattr(ro, cls)(groups, lr=0.1, weight_decay=1e-2, clip_norm=0.05, fused=fused)
    ref_groups = ro.decay_groups(theirs, 1e-2)
    ref = getattr(torch.optim, cls)(ref_groups, lr=0.1, weight_decay=1e-2)
    for _ in range(3):
        for m, o in ((ours, opt), (theirs, ref)):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
        total = torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.05)
        assert total > 0.05, "the test must clip"
        opt.step()
        ref.step()
        for a, b in zip(ours.parameters(), theirs.parameters()):  # torch divides by ‖g‖ + 1e-6: not bitwise
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_clip_norm_does_not_touch_the_gradients_of_any_group():
    p, q = torch.zeros(3, requires_grad=True), torch.zeros(4, requires_grad=True)
    p.grad, q.grad = torch.full((3,), 2.0), torch.full((4,), -1.0)
    before = (p.grad.clone(), q.grad.clone())
    ro.SGD([{"params": [p]}, {"params": [q], "weight_decay": 0.1}], lr=1.0, clip_norm=0.5).step()
    assert torch.equal(p.grad, before[0]) and torch.equal(q.grad, before[1])
    total = float(torch.cat(before).norm())  # √(3·4 + 4·1) = 4
    torch.testing.assert_close(p.detach(), -before[0] * 0.5 / total)
