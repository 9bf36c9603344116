"""Transform, chain and the pieces' checks (the Optimizer that steps them: test_optimizer.py)."""

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


def test_chain_and_optimizer_refuse_what_is_not_a_transform():
    with pytest.raises(TypeError, match=r"chain: argument 1 must be a Transform .*got 0.9 \(float\)"):
        ro.chain(ro.scale_by_adam(), 0.9)
    with pytest.raises(TypeError, match=r"transform must be a Transform or a function group -> Transform, got 5"):
        ro.Optimizer([torch.zeros(1, requires_grad=True)], 5)


def test_scale_and_schedule_compose():
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = ro.Optimizer([w], ro.chain(ro.scale(2.0), ro.scale_by_schedule(lambda t: 1 / t)), lr=1.0)
    for _ in range(3):
        w.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
    assert float(w.detach()) == pytest.approx(-2 * (1 + 1 / 2 + 1 / 3))


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
            assert all(torch.equal(a, b) for a, b in zip(state[name], inner_state[name])), (
                f"state {name} was modified by {second}"
            )


def _deferred_case():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(4, 3, dtype=torch.float64, generator=g), torch.randn(5, dtype=torch.float64, generator=g)]
    num = [torch.randn_like(p) for p in params]
    den = [torch.rand(p.shape, dtype=torch.float64, generator=g) + 0.5 for p in params]
    return params, num, den


@pytest.mark.parametrize("decay", [None, 0.1, [0.1, 0.3]])
@pytest.mark.parametrize("with_den", [True, False])
@pytest.mark.parametrize("scale", [None, [2.0, 0.5]])
def test_deferred_update_equals_its_formula(decay, with_den, scale):
    """u = s · num / den + λ W, evaluated or applied as W ← (1 − ηλ) W − η s · num / den."""
    params, num, den = _deferred_case()
    lr = 0.3
    lam = [decay] * 2 if not isinstance(decay, list) else decay
    expected_u = []
    for i, (p, n, d) in enumerate(zip(params, num, den)):
        u = n / d if with_den else n.clone()
        u = u * (scale[i] if scale else 1.0)
        expected_u.append(u + (lam[i] or 0.0) * p)
    deferred = ro.Deferred(num, den if with_den else None, scale, decay)
    for u, e in zip(deferred.evaluate(params), expected_u):
        torch.testing.assert_close(u, e, rtol=1e-14, atol=1e-15)
    applied = [p.clone() for p in params]
    deferred.apply(applied, lr)
    for a, p, e in zip(applied, params, expected_u):
        torch.testing.assert_close(a, p - lr * e, rtol=1e-14, atol=1e-15)


def test_a_piece_after_a_deferred_update_gets_it_evaluated():
    """scale_by_adam defers its quotient; a following piece sees the materialized update."""
    seen = []

    def record(updates, state, ctx):
        seen.append(updates)
        return updates

    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    w.grad = torch.tensor([0.5, 0.25], dtype=torch.float64)
    ro.Optimizer([w], ro.chain(ro.scale_by_adam(), ro.Transform(lambda p: {}, record)), lr=0.1).step()
    assert not isinstance(seen[0], ro.Deferred)
    torch.testing.assert_close(
        seen[0][0], torch.tensor([1.0, 1.0], dtype=torch.float64), rtol=1e-6, atol=0
    )  # m̂/√v̂ = sign(g)
    torch.testing.assert_close(w.detach(), torch.tensor([0.9, -2.1], dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "build, error, words",
    [
        (lambda: ro.trace(momentum=1.0), ValueError, "momentum must be in [0.0, 1.0), got 1.0"),
        (lambda: ro.trace(momentum=-0.1), ValueError, "momentum must be in [0.0, 1.0)"),
        (lambda: ro.trace(dampening=2.0), ValueError, "dampening must be in [0.0, 1.0]"),
        (lambda: ro.trace(nesterov=1), TypeError, "nesterov must be true or false"),
        (lambda: ro.scale("a"), TypeError, "factor must be a number, got 'a'"),
        (lambda: ro.scale(float("nan")), ValueError, "factor must be a finite number"),
        (lambda: ro.scale_by_schedule(3), TypeError, "schedule must be a function of the step, got 3"),
        (lambda: ro.clip_by_global_norm(0.0), ValueError, "max_norm must be > 0"),
        (lambda: ro.clip_by_value(-1.0), ValueError, "clip_value must be > 0"),
        (lambda: ro.add_noise(-1.0), ValueError, "eta must be >= 0"),
        (lambda: ro.add_noise(0.1, gamma=-1.0), ValueError, "gamma must be >= 0"),
        (lambda: ro.add_noise(0.1, seed=-1), ValueError, "seed must be >= 0"),
        (lambda: ro.add_decayed_weights(-1.0), ValueError, "weight_decay must be >= 0, got -1.0"),
        (lambda: ro.add_decayed_weights(float("nan")), ValueError, "weight_decay must be a finite number"),
        (lambda: ro.add_decayed_weights(0.1, schedule=0.5), TypeError, "schedule must be a function of the step"),
        (lambda: ro.add_l1(-1.0), ValueError, "alpha must be >= 0"),
        (lambda: ro.prox_l1(-1.0), ValueError, "alpha must be >= 0"),
        (lambda: ro.scale_by_adagrad(eps=0.0), ValueError, "eps must be > 0"),
        (
            lambda: ro.scale_by_adagrad(initial_accumulator_value=-1.0),
            ValueError,
            "initial_accumulator_value must be >= 0",
        ),
        (lambda: ro.scale_by_adadelta(rho=2.0), ValueError, "rho must be in [0.0, 1.0)"),
        (lambda: ro.scale_by_adam(b1=1.5), ValueError, "b1 must be in [0.0, 1.0), got 1.5"),
        (lambda: ro.scale_by_adam(b2=1.0), ValueError, "b2 must be in [0.0, 1.0)"),
        (lambda: ro.scale_by_adam(eps=-1e-8), ValueError, "eps must be > 0"),
        (lambda: ro.scale_by_adam(amsgrad="yes"), TypeError, "amsgrad must be true or false"),
        (lambda: ro.scale_by_rms(alpha=-1.0), ValueError, "alpha must be in [0.0, 1.0)"),
        (lambda: ro.scale_by_rms(centered=None), TypeError, "centered must be true or false"),
        (lambda: ro.scale_by_rms(eps_in_sqrt=1), TypeError, "eps_in_sqrt must be true or false"),
    ],
)
def test_every_piece_checks_its_hyperparameters_when_built(build, error, words):
    """The pieces are public (chain them by hand): like the named optimizers, each refuses a
    value out of range, NaN or of the wrong type when it is built, naming the argument."""
    with pytest.raises(error) as info:
        build()
    assert words in str(info.value)
