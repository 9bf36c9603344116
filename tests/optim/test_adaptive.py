"""Adaptive optimizers against the NumPy float64 references of TECHNIQUES.md section 3."""

import numpy as np
import pytest
import torch
from reference import adadelta, adagrad, adam, adam_uncorrected, adamw, rmsprop, run

import reglab.optim as ro
from reglab.errors import ReglabTypeError

STEPS = 100


def grad_fn(w, t):
    """Gradient of a non-convex function plus a step-dependent term (a stochastic problem)."""
    rng = np.random.default_rng(t)
    return 2 * (w - 1.0) + 0.5 * np.cos(3 * w) + 0.3 * rng.standard_normal(w.shape)


def ours(optimizer_cls, w0, steps=STEPS, **kwargs):
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    opt = optimizer_cls([w], **kwargs)
    for t in range(1, steps + 1):
        w.grad = torch.tensor(grad_fn(w.detach().numpy(), t))
        opt.step()
    return w.detach().numpy()


W0 = np.random.default_rng(0).standard_normal(20) * 2


@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_adagrad(eps_in_sqrt):
    eps = 1e-3  # large enough that the two placements differ measurably
    want = run(adagrad(0.1, eps, eps_in_sqrt), W0, grad_fn, STEPS)
    got = ours(ro.Adagrad, W0, lr=0.1, eps=eps, eps_in_sqrt=eps_in_sqrt)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    other = run(adagrad(0.1, eps, not eps_in_sqrt), W0, grad_fn, STEPS)
    assert np.abs(other - want).max() > 1e-6, "the two epsilon placements must differ"


def test_adadelta_zeiler_2012():
    want = run(adadelta(1.0, 0.9, 1e-6), W0, grad_fn, STEPS)
    np.testing.assert_allclose(ours(ro.Adadelta, W0), want, rtol=1e-12)  # lr = 1 by default


@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_rmsprop(eps_in_sqrt):
    eps = 1e-3
    want = run(rmsprop(0.01, 0.99, eps, eps_in_sqrt), W0, grad_fn, STEPS)
    got = ours(ro.RMSprop, W0, lr=0.01, eps=eps, eps_in_sqrt=eps_in_sqrt)
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("course", [False, True])
def test_adam_pytorch_and_course_forms(course):
    eps = 1e-3
    want = run(adam(0.01, 0.9, 0.999, eps, course), W0, grad_fn, STEPS)
    got = ours(ro.Adam, W0, lr=0.01, eps=eps, eps_in_sqrt=course)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    other = run(adam(0.01, 0.9, 0.999, eps, not course), W0, grad_fn, STEPS)
    assert np.abs(other - want).max() > 1e-6


@pytest.mark.parametrize("eps_in_sqrt", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_adam_without_bias_correction(eps_in_sqrt, fused):
    eps = 1e-3
    want = run(adam_uncorrected(0.01, 0.9, 0.999, eps, eps_in_sqrt), W0, grad_fn, STEPS)
    got = ours(ro.Adam, W0, lr=0.01, eps=eps, eps_in_sqrt=eps_in_sqrt, bias_correction=False, fused=fused)
    np.testing.assert_allclose(got, want, rtol=1e-12 if not fused else 1e-10)
    corrected = run(adam(0.01, 0.9, 0.999, eps, eps_in_sqrt), W0, grad_fn, STEPS)
    assert np.abs(corrected - want).max() > 1e-4, "the correction changes the trajectory"
    with pytest.raises(ReglabTypeError, match="bias_correction"):
        ro.Adam([torch.zeros(1, requires_grad=True)], bias_correction="no")


def test_adamw():
    want = run(adamw(0.01, 0.9, 0.999, 1e-8, 0.1), W0, grad_fn, STEPS)
    np.testing.assert_allclose(ours(ro.AdamW, W0, lr=0.01, weight_decay=0.1), want, rtol=1e-12)


def test_amsgrad_denominator_never_shrinks():
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = ro.Adam([w], lr=0.1, amsgrad=True)
    for g in [10.0, 0.1, 0.1, 0.1]:
        w.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
    state = opt.state[w]
    assert float(state["nu_max"]) >= float(state["nu"]) and float(state["nu_max"]) == pytest.approx((1 - 0.999) * 100)
