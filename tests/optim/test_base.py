"""Transform, chain and Optimizer."""

import pytest
import torch

import reglab.optim as ro


def test_identity_chain_is_plain_gradient_descent():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    w.grad = torch.tensor([0.5, -1.0])
    ro.Optimizer([w], ro.chain(), lr=0.1).step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.95, 2.1]))
    w.grad = torch.tensor([0.5, -1.0])
    ro.Optimizer([w], ro.identity(), lr=1.0).step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.45, 3.1]))


def test_chain_refuses_clashing_state_names():
    opt = ro.Optimizer([torch.zeros(1, requires_grad=True)], ro.chain(ro.scale_by_adam(), ro.scale_by_adam()))
    opt.param_groups[0]["params"][0].grad = torch.ones(1)
    with pytest.raises(ValueError, match="mu, nu"):
        opt.step()


def test_scale_and_schedule_compose():
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = ro.Optimizer([w], ro.chain(ro.scale(2.0), ro.scale_by_schedule(lambda t: 1 / t)), lr=1.0)
    for _ in range(3):
        w.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
    assert float(w.detach()) == pytest.approx(-2 * (1 + 1 / 2 + 1 / 3))


def test_state_is_per_parameter_and_named():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = ro.Adam([a, b])
    a.grad, b.grad = torch.ones(2), torch.ones(3)
    opt.step()
    assert set(opt.state[a]) == {"mu", "nu", "step"} and opt.state[b]["mu"].shape == (3,)
    b.grad = None
    opt.step()
    assert opt.state[a]["step"] == 2 and opt.state[b]["step"] == 1


def test_sparse_gradients_are_refused():
    w = torch.zeros(3, requires_grad=True)
    w.grad = torch.zeros(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        ro.SGD([w], lr=0.1).step()


PIECES = {
    "trace": lambda: ro.trace(0.9),
    "nesterov": lambda: ro.trace(0.9, nesterov=True),
    "adagrad": ro.scale_by_adagrad,
    "adadelta": ro.scale_by_adadelta,
    "rms": lambda: ro.scale_by_rms(centered=True),
    "adam": lambda: ro.scale_by_adam(amsgrad=True),
    "decay": lambda: ro.add_decayed_weights(0.1),
    "l1": lambda: ro.add_l1(0.1),
    "clip_norm": lambda: ro.clip_by_global_norm(0.1),
    "clip_value": lambda: ro.clip_by_value(0.1),
    "noise": ro.add_noise,
    "scale": lambda: ro.scale(2.0),
    "negate": ro.negate,
}


@pytest.mark.parametrize("first", list(PIECES))
@pytest.mark.parametrize("second", ["decay", "clip_value", "scale"])
def test_no_piece_writes_into_its_input(first, second):
    """Gradients and the state a piece returns as its update must survive the next piece."""
    params = [torch.randn(4, 3), torch.randn(5)]
    transform = ro.chain(PIECES[first](), PIECES[second]())
    state = transform.init(params)
    for t in (1, 2):
        grads = [torch.randn_like(p) for p in params]
        kept_grads = [g.clone() for g in grads]
        ctx = ro.Context(params, grads, [t, t], {"lr": 0.1})
        inner = PIECES[first]()
        inner_state = {k: [v.clone() for v in vs] for k, vs in state.items()}
        inner.update(grads, inner_state, ctx)  # the first piece alone, on a copy of the state
        transform.update(grads, state, ctx)
        assert all(torch.equal(g, k) for g, k in zip(grads, kept_grads)), "gradients were modified"
        for name in inner_state:
            assert all(torch.equal(a, b) for a, b in zip(state[name], inner_state[name])), f"state {name} was modified by {second}"
