"""Named optimizers against torch.optim: same trajectory, same state, same API."""

import io
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import reglab.optim as ro

# our state name -> torch.optim's
STATE_NAMES = {
    "momentum": "momentum_buffer",
    "sum_sq": "sum",
    "E_g2": "square_avg",
    "E_dx2": "acc_delta",
    "mu": "exp_avg",
    "nu": "exp_avg_sq",
    "nu_max": "max_exp_avg_sq",
    "step": "step",
}
RMSPROP_NAMES = {**STATE_NAMES, "nu": "square_avg", "mu": "grad_avg"}

GRID = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.01, "maximize": True}),
    ("SGD", {"lr": 0.01, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05, "maximize": True}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.1, "eps": 1e-5}),
    ("Adagrad", {"maximize": True}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.5, "eps": 1e-4, "weight_decay": 0.1}),
    ("Adadelta", {"maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"lr": 0.001, "alpha": 0.9, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {"maximize": True, "lr": 1e-3}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("Adam", {"maximize": True, "amsgrad": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.5, "amsgrad": True}),
    ("AdamW", {"maximize": True}),
]
SHAPES = [(), (7,), (5, 3), (4, 2, 3)]


def _problem(dtype, seed=0):
    """A stochastic, non-convex problem: the loss of step t has its own random linear term,
    so gradients stay O(1) as in mini-batch training."""
    g = torch.Generator().manual_seed(seed)
    draw = lambda s: torch.randn(s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731  same values in any dtype
    params = [draw(s) for s in SHAPES]
    targets = [draw(s) for s in SHAPES]
    freqs = [draw(s).abs() * 2 for s in SHAPES]
    noise = [[draw(s) for s in SHAPES] for _ in range(200)]

    def loss(ps, t):
        n = noise[t % len(noise)]
        return sum(((p - t) ** 2 + torch.sin(f * p) + e * p).sum() for p, t, f, e in zip(ps, targets, freqs, n))

    return params, loss


def _run(cls, params, loss, options, steps):
    ps = [p.clone().requires_grad_() for p in params]
    groups = [{"params": ps[:2]}, {"params": ps[2:], "lr": options.get("lr", 1e-2) * 0.5}]
    opt = cls(groups, **options)
    for t in range(steps):
        opt.zero_grad()
        loss(ps, t).backward()
        opt.step()
    return ps, opt


def _torch_name(cls_name, ours):
    return (RMSPROP_NAMES if cls_name == "RMSprop" else STATE_NAMES)[ours]


def _decoupled(name, options):
    return name == "AdamW" or options.get("decoupled_weight_decay", False)


@pytest.mark.parametrize("name, options", GRID, ids=[f"{n}-{'-'.join(o) or 'default'}" for n, o in GRID])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.slow
def test_parity_with_torch_optim(name, options, dtype):
    """200 steps, two param groups, four shapes: parameters and state equal torch.optim's,
    within 1e-10 relative in float64 and torch's default tolerance in float32."""
    ours, ours_opt = _run(getattr(ro, name), *_problem(dtype), options, steps=200)
    ref, ref_opt = _run(getattr(torch.optim, name), *_problem(dtype), {**options, "foreach": False}, steps=200)
    if dtype == torch.float32 and _decoupled(name, options):
        # torch.optim rounds the decay factor (1 - lr*wd) to float32 (a 0.3% error in the decay
        # applied per step at lr*wd = 1e-5); we apply W - lr*(u + wd*W) instead. Judge both
        # against the float64 trajectory: ours must be at least as close as torch.optim's.
        truth, _ = _run(getattr(torch.optim, name), *_problem(torch.float64), options, steps=200)
        for p, q, t in zip(ours, ref, truth):
            assert (p.double() - t).abs().max() <= (q.double() - t).abs().max()
            torch.testing.assert_close(p.double(), t, rtol=1e-4, atol=1e-5)
        return
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {}
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, **tol)
    for p, q in zip(ours, ref):
        mine, theirs = ours_opt.state[p], ref_opt.state[q]
        extra = {key for key in mine if _torch_name(name, key) not in theirs}
        assert extra <= {"step"}, extra  # torch's SGD keeps no step count
        for key in set(mine) - extra:
            other = theirs[_torch_name(name, key)]
            if key == "step":
                assert mine[key] == int(other)
            else:
                torch.testing.assert_close(mine[key], other, **tol)


def _complex_problem(seed=0):
    """As ``_problem`` on complex parameters: the loss is real, and its gradient mixes the real
    and imaginary parts (``sin`` of the real part, ``|p − t|²``, a random linear term)."""
    g = torch.Generator().manual_seed(seed)
    draw = lambda s: torch.randn(s, generator=g, dtype=torch.complex128)  # noqa: E731
    params, targets, noise = (
        [draw(s) for s in SHAPES],
        [draw(s) for s in SHAPES],
        [[draw(s) for s in SHAPES] for _ in range(50)],
    )

    def loss(ps, t):
        n = noise[t % len(noise)]
        return sum(((p - t).abs() ** 2 + torch.sin(2 * p.real) + (e * p).real).sum() for p, t, e in zip(ps, targets, n))

    return params, loss


@pytest.mark.parametrize("name, options", GRID, ids=[f"{n}-{'-'.join(o) or 'default'}" for n, o in GRID])
@pytest.mark.slow
def test_complex_parameters_as_torch_optim(name, options):
    """torch.optim steps a complex parameter as the pair of its real and imaginary parts
    (``view_as_real``): Adam's second moment is ``Re(g)²`` and ``Im(g)²``, not ``g²``.
    50 steps in complex128: parameters and state (complex, as torch keeps it) within 1e-10."""
    ours, ours_opt = _run(getattr(ro, name), *_complex_problem(), options, steps=50)
    ref, ref_opt = _run(getattr(torch.optim, name), *_complex_problem(), {**options, "foreach": False}, steps=50)
    tol = {"rtol": 1e-10, "atol": 1e-12}
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, **tol)
        mine, theirs = ours_opt.state[p], ref_opt.state[q]
        for key in set(mine) - {"step"}:
            assert mine[key].dtype == torch.complex128
            torch.testing.assert_close(mine[key], theirs[_torch_name(name, key)], **tol)


def test_fast_mode_refuses_complex_parameters():
    p = torch.zeros(3, dtype=torch.complex64, requires_grad=True)
    opt = ro.Adam([p], fused=True)
    p.abs().sum().backward()
    with pytest.raises(ValueError, match="complex"):
        opt.step()


def test_torch_lr_schedulers_drive_our_optimizers():
    def lrs(opt_cls, sched):
        p = torch.zeros(3, requires_grad=True)
        opt = opt_cls([p], lr=0.1, momentum=0.9) if opt_cls in (ro.SGD, torch.optim.SGD) else opt_cls([p], lr=0.1)
        s = sched(opt)
        seen = []
        for _ in range(20):
            p.grad = torch.ones(3)
            opt.step()
            s.step()
            seen.append(
                (opt.param_groups[0]["lr"], opt.param_groups[0].get("momentum"), opt.param_groups[0].get("betas"))
            )
        return seen, p.detach()

    for cls in ("SGD", "Adam"):
        one_cycle = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=20)  # noqa: E731
        ours, p_ours = lrs(getattr(ro, cls), one_cycle)
        theirs, p_theirs = lrs(getattr(torch.optim, cls), one_cycle)
        assert ours == theirs
        torch.testing.assert_close(p_ours, p_theirs)


@pytest.mark.parametrize("fused", [False, True], ids=["readable", "fast"])
@pytest.mark.parametrize("name", list(ro.OPTIMIZERS))
def test_tensor_lr_as_torch_optim(name, fused):
    """``lr`` may be a one-element tensor, as in torch.optim; a scheduler changes it in place
    (``fill_``), and the step follows: the trajectory equals torch.optim's with the same lr."""

    def run(cls, **kw):
        p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
        opt = cls([p], lr=torch.tensor(0.05, dtype=torch.float64), **kw)
        if isinstance(opt, ro.Optimizer):
            opt.compile = False  # the fast mode's flat buffers, uncompiled (test_flat.py compares the two)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        for t in range(10):
            opt.zero_grad()
            ((p - t / 10) ** 2 + torch.sin(3 * p)).sum().backward()
            opt.step()
            sched.step()
        assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
        return p.detach()

    cls = ro.OPTIMIZERS[name]
    extra = {"momentum": 0.9} if name == "sgd" else {}
    ours = run(cls, fused=fused, **extra)
    torch.testing.assert_close(
        ours, run(getattr(torch.optim, cls.__name__), foreach=False, **extra), rtol=1e-12, atol=1e-14
    )


SPARSE = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "maximize": True}),
]


def _embedding_run(cls, options, steps=10, **extra):
    """A sparse embedding (``sparse=True``: gradients hold only the rows looked up) trained on
    random lookups; some rows go several steps without a gradient."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(20, 4, sparse=True).double()
    opt = cls(emb.parameters(), **options, **extra)
    if isinstance(opt, ro.Optimizer):
        opt.compile = False
    for t in range(steps):
        opt.zero_grad()
        rows = torch.randint(0, 20, (6,), generator=torch.Generator().manual_seed(t))
        (emb(rows) ** 2 + emb(rows)).sum().backward()
        opt.step()
    return emb.weight.detach()


@pytest.mark.parametrize("fused", [False, True], ids=["readable", "fast"])
@pytest.mark.parametrize("name, options", SPARSE, ids=[f"{n}-{'-'.join(o)}" for n, o in SPARSE])
def test_sparse_gradients_as_torch_optim(name, options, fused):
    """SGD and Adagrad take sparse gradients, as in torch.optim, with its trajectory."""
    ours = _embedding_run(getattr(ro, name), options, fused=fused)
    torch.testing.assert_close(ours, _embedding_run(getattr(torch.optim, name), options), rtol=1e-12, atol=1e-14)


def test_a_torch_optim_checkpoint_with_a_sparse_momentum_buffer_loads():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(20, 4, sparse=True).double()
    ref = torch.optim.SGD(emb.parameters(), lr=0.1, momentum=0.9)
    ours_emb = torch.nn.Embedding(20, 4, sparse=True).double()
    for t in range(10):
        if t == 5:  # switch: our optimizer takes the other embedding on from torch.optim's state
            assert ref.state[emb.weight]["momentum_buffer"].is_sparse
            ours_emb.load_state_dict(emb.state_dict())
            ours = ro.SGD(ours_emb.parameters(), lr=0.1, momentum=0.9)
            ours.load_state_dict(ref.state_dict())
        for e, o in ((emb, ref),) if t < 5 else ((emb, ref), (ours_emb, ours)):
            o.zero_grad()
            rows = torch.randint(0, 20, (6,), generator=torch.Generator().manual_seed(t))
            (e(rows) ** 2 + e(rows)).sum().backward()
            o.step()
    torch.testing.assert_close(ours_emb.weight, emb.weight, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fused", [False, True], ids=["readable", "fast"])
@pytest.mark.parametrize("name", ["Adadelta", "RMSprop", "Adam", "AdamW"])
def test_sparse_gradients_are_refused_where_torch_optim_refuses_them(name, fused):
    with pytest.raises(RuntimeError, match=f"{name} does not support sparse gradients"):
        _embedding_run(getattr(ro, name), {}, steps=1, fused=fused)


def test_closure_param_groups_and_zero_grad():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = ro.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == 5.0
    torch.testing.assert_close(w.detach(), torch.tensor([0.8, -1.6]))
    b = torch.zeros(1, requires_grad=True)
    opt.add_param_group({"params": [b], "lr": 0.5})
    assert opt.param_groups[1]["momentum"] == 0.0 and opt.param_groups[1]["lr"] == 0.5
    opt.zero_grad()
    assert w.grad is None


@pytest.mark.parametrize("name", list(ro.OPTIMIZERS))
def test_state_dict_round_trip_is_bitwise(name):
    params, loss = _problem(torch.float32, seed=1)
    cls = ro.OPTIMIZERS[name]
    a = [p.clone().requires_grad_() for p in params]
    opt_a = cls(a, lr=0.01)

    def step(ps, opt, t):
        opt.zero_grad()
        loss(ps, t).backward()
        opt.step()

    for t in range(10):
        step(a, opt_a, t)
    buffer = io.BytesIO()
    torch.save(opt_a.state_dict(), buffer)  # a real save: nothing shared with opt_a
    buffer.seek(0)
    b = [p.detach().clone().requires_grad_() for p in a]
    opt_b = cls(b, lr=0.01)
    opt_b.load_state_dict(torch.load(buffer, weights_only=True))
    for t in range(10, 20):
        step(a, opt_a, t)
        step(b, opt_b, t)
    for p, q in zip(a, b):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name, options", GRID, ids=[f"{n}-{'-'.join(o) or 'default'}" for n, o in GRID])
def test_a_torch_optim_checkpoint_loads_and_the_run_continues_as_in_torch(name, options):
    """Replacing torch.optim.X by reglab.optim.X mid-run: 10 steps with torch.optim, its
    ``state_dict`` saved and loaded (``weights_only``) into reglab's optimizer, which then
    takes the next 10 steps exactly as torch.optim does (float64, within 1e-12)."""
    params, loss = _problem(torch.float64)
    ref, ref_opt = _run(getattr(torch.optim, name), params, loss, {**options, "foreach": False}, steps=10)
    buffer = io.BytesIO()
    torch.save(ref_opt.state_dict(), buffer)
    ours = [p.detach().clone().requires_grad_() for p in ref]
    opt = getattr(ro, name)([{"params": ours[:2]}, {"params": ours[2:]}], **{**options, "lr": 123.0})
    buffer.seek(0)
    opt.load_state_dict(torch.load(buffer, weights_only=True))
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
    for t in range(10, 20):
        for ps, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            loss(ps, t).backward()
            o.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(ro.OPTIMIZERS))
def test_zero_or_missing_gradient_leaves_parameters_untouched(name):
    cls = ro.OPTIMIZERS[name]
    frozen = torch.ones(3, requires_grad=True)  # grad stays None
    zero = torch.ones(3, requires_grad=True)
    options = {"weight_decay": 0.0} if name == "adamw" else {}
    opt = cls([frozen, zero], lr=0.1, **options)
    zero.grad = torch.zeros(3)
    opt.step()
    assert torch.equal(frozen.detach(), torch.ones(3)) and torch.equal(zero.detach(), torch.ones(3))
    assert not opt.state[frozen]
    decaying = cls([frozen], lr=0.1, weight_decay=0.5, decoupled=True)
    decaying.step()
    assert torch.equal(frozen.detach(), torch.ones(3)), "no decay for a parameter without a gradient"


@pytest.mark.parametrize(
    "name, kwargs, error, word",
    [
        ("SGD", {"lr": -0.1}, ValueError, "lr"),
        ("SGD", {"lr": math.nan}, ValueError, "lr"),
        ("SGD", {"lr": "0.1"}, TypeError, "lr"),
        ("SGD", {"lr": torch.tensor([0.1, 0.2])}, ValueError, "lr"),
        ("SGD", {"lr": torch.tensor(-0.1)}, ValueError, "lr"),
        ("SGD", {"lr": torch.tensor(math.nan)}, ValueError, "lr"),
        ("SGD", {"momentum": -0.9}, ValueError, "momentum"),
        ("SGD", {"momentum": 1.0}, ValueError, "momentum must be in [0.0, 1.0), got 1.0"),  # torch.optim takes it
        ("SGD", {"momentum": 0.9, "dampening": 1.5}, ValueError, "dampening must be in [0.0, 1.0], got 1.5"),
        ("SGD", {"momentum": 0.9, "dampening": -0.5}, ValueError, "dampening"),
        ("RMSprop", {"momentum": 1.5}, ValueError, "momentum must be in [0.0, 1.0)"),
        ("SGD", {"nesterov": True}, ValueError, "nesterov"),
        ("SGD", {"weight_decay": -1.0}, ValueError, "weight_decay"),
        ("SGD", {"l1_proximal": math.inf}, ValueError, "l1_proximal"),
        ("SGD", {"clip_norm": 0.0}, ValueError, "clip_norm"),
        ("SGD", {"maximize": 1}, TypeError, "maximize"),
        ("Adam", {"betas": (1.0, 0.999)}, ValueError, "betas[0]"),
        ("Adam", {"betas": (0.9, -0.1)}, ValueError, "betas[1]"),
        ("Adam", {"betas": 0.9}, TypeError, "betas"),
        ("Adam", {"eps": 0.0}, ValueError, "eps"),
        ("Adam", {"eps": -1e-8}, ValueError, "eps"),
        ("Adam", {"amsgrad": "yes"}, TypeError, "amsgrad"),
        ("Adam", {"fused": "yes"}, TypeError, "fused"),
        ("SGD", {"foreach": 1}, TypeError, "foreach"),
        ("Adam", {"foreach": True, "fused": True}, ValueError, "fused=True and foreach=True cannot be asked together"),
        ("AdamW", {"weight_decay": math.nan}, ValueError, "weight_decay"),
        ("RMSprop", {"alpha": 1.0}, ValueError, "alpha"),
        ("Adadelta", {"rho": 1.5}, ValueError, "rho"),
        ("Adagrad", {"lr_decay": -0.1}, ValueError, "lr_decay"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(name, kwargs, error, word):
    with pytest.raises(error) as info:
        getattr(ro, name)([torch.zeros(1, requires_grad=True)], **kwargs)
    assert word in str(info.value)


def test_bad_hyperparameter_in_a_later_group():
    opt = ro.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": -1.0})


def test_a_state_dict_of_another_optimizer_or_model_is_refused_and_nothing_is_replaced():
    """Adam's state loaded into an SGD with momentum failed only at the next step (KeyError
    'momentum', torch.optim's SGD too); another model's state with as many tensors failed
    inside the update. Both are refused by load_state_dict, which leaves the optimizer as it was."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    adam = torch.optim.Adam(model.parameters())
    model(torch.randn(3, 4)).sum().backward()
    adam.step()
    sgd = ro.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sgd.step()
    before = {k: v.clone() for k, v in sgd.state[model[0].weight].items() if isinstance(v, torch.Tensor)}
    with pytest.raises(
        ValueError,
        match=r"parameter 0's saved state holds exp_avg, exp_avg_sq, step, but this SGD keeps momentum, step",
    ):
        sgd.load_state_dict(adam.state_dict())
    assert sgd.param_groups[0]["momentum"] == 0.9 and "betas" not in sgd.param_groups[0]
    assert all(torch.equal(sgd.state[model[0].weight][k], v) for k, v in before.items())
    other = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))  # 4 tensors too, other shapes
    theirs = ro.Adam(other.parameters())
    other(torch.randn(3, 8)).sum().backward()
    theirs.step()
    with pytest.raises(
        ValueError,
        match=r"parameter 0's saved 'mu' has shape \(4, 8\), the parameter \(8, 4\): the state_dict belongs to "
        r"another model",
    ):
        ro.Adam(model.parameters()).load_state_dict(theirs.state_dict())
    amsgrad = ro.Adam(model.parameters(), amsgrad=True)
    amsgrad.step()
    plain = ro.Adam(model.parameters())
    plain.load_state_dict(amsgrad.state_dict())  # the saved options come with the state, as in torch.optim
    assert plain.param_groups[0]["amsgrad"] is True
    plain.step()


def test_which_optimizers_take_eps_in_sqrt_is_what_the_readme_says():
    """README: Adagrad, RMSprop, Adam and AdamW take eps_in_sqrt; Adadelta, whose ε is inside its
    roots already, refuses it (and so does SGD, which has no ε)."""
    import inspect

    takes = sorted(n for n, cls in ro.OPTIMIZERS.items() if "eps_in_sqrt" in inspect.signature(cls).parameters)
    assert takes == ["adagrad", "adam", "adamw", "rmsprop"]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "Adagrad, RMSprop, Adam and AdamW also take `eps_in_sqrt=True`" in readme
    with pytest.raises(TypeError):
        ro.Adadelta([torch.zeros(1, requires_grad=True)], eps_in_sqrt=True)
