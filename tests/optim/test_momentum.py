"""Heavy-ball and Nesterov momentum against float64 references."""

import numpy as np
import pytest
import torch
from reference import momentum, run, sgd

import reglab.optim as ro

A = np.diag(np.linspace(0.5, 5.0, 6))  # an ill-conditioned quadratic, where momentum matters
B = np.linspace(-1, 1, 6)


def grad(w, t=None):
    return A @ w - B + 0.2 * np.sin(3 * w)


def ours(w0, steps, **kwargs):
    w = torch.tensor(w0, requires_grad=True)
    opt = ro.SGD([w], **kwargs)
    for _ in range(steps):
        w.grad = torch.tensor(grad(w.detach().numpy()))
        opt.step()
    return w.detach().numpy(), opt


W0 = np.ones(6)


def test_plain_sgd():
    np.testing.assert_allclose(ours(W0, 50, lr=0.05)[0], run(sgd(0.05), W0, grad, 50), rtol=1e-13)


def test_heavy_ball_equals_course_form():
    want = run(momentum(0.05, 0.9), W0, grad, 80)
    np.testing.assert_allclose(ours(W0, 80, lr=0.05, momentum=0.9)[0], want, rtol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_nesterov_pytorch_form_is_course_lookahead_in_shifted_variable(beta):
    """Course: a <- beta a + grad(W - lr beta a); W <- W - lr a.
    PyTorch: b <- beta b + g; W' <- W' - lr (g + beta b), with W' = W - lr beta a."""
    lr, steps = 0.05, 60
    w, a = W0.copy(), np.zeros(6)
    shifted = []
    for _ in range(steps):
        a = beta * a + grad(w - lr * beta * a)  # look-ahead gradient
        w = w - lr * a
        shifted.append(w - lr * beta * a)
    # W'_0 = W_0 - lr beta a_0 = W_0 since a_0 = 0: both start at W0
    wt = torch.tensor(W0, requires_grad=True)
    opt = ro.SGD([wt], lr=lr, momentum=beta, nesterov=True)
    for t in range(steps):
        wt.grad = torch.tensor(grad(wt.detach().numpy()))
        opt.step()
        np.testing.assert_allclose(wt.detach().numpy(), shifted[t], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(opt.state[wt]["momentum"].numpy(), a, rtol=1e-11, atol=1e-13)


def test_dampening_and_first_step():
    _, opt = ours(W0, 1, lr=0.1, momentum=0.9, dampening=0.5)
    np.testing.assert_allclose(opt.state[next(iter(opt.state))]["momentum"].numpy(), grad(W0))  # a <- g at t = 1
