"""The fast mode (fused=True: flat buffers, compiled update) equals the readable implementation."""

import io

import pytest
import torch
from torch import nn

import reglab.optim as ro
import reglab.optim.flat as flat_module

CASES = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "decoupled": True}),
    ("SGD", {"lr": 0.05, "l1_proximal": 0.5, "clip_norm": 1.0, "clip_value": 0.5, "maximize": True}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.1, "decoupled": True, "weight_decay_schedule": lambda t: 1 / t}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "eps_in_sqrt": True, "initial_accumulator_value": 0.1}),
    ("Adadelta", {"weight_decay": 0.01}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "l1": 0.01}),
    ("RMSprop", {"eps_in_sqrt": True, "eps": 1e-4}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "eps_in_sqrt": True, "eps": 1e-4, "weight_decay": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "l1_proximal": 0.1}),
]
SHAPES = [(6, 5), (5,), (3, 2, 2), ()]


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]


def _run(name, options, fused, steps=40, compile=False, params=None):
    ps = [p.clone().requires_grad_() for p in (params or _params())]
    opt = getattr(ro, name)(
        [{"params": ps[:2]}, {"params": ps[2:], "lr": options.get("lr", 0.01) / 2}], fused=fused, **options
    )
    opt.compile = compile
    for t in range(steps):
        opt.zero_grad()
        sum(((p - 0.3 * t) ** 2 + torch.sin(3 * p)).sum() for p in ps).backward()
        opt.step()
    return ps, opt


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{'-'.join(o)}" for n, o in CASES])
def test_flat_equals_readable(name, options):
    readable, r_opt = _run(name, options, fused=False)
    flat, f_opt = _run(name, options, fused=True)
    for a, b in zip(readable, flat):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
    for a, b in zip(readable, flat):
        assert r_opt.state[a].keys() == f_opt.state[b].keys()
        for key, value in r_opt.state[a].items():
            if key == "step":
                assert f_opt.state[b][key] == value
            else:
                torch.testing.assert_close(f_opt.state[b][key], value, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "name, options", [CASES[2], CASES[10], CASES[11]], ids=["sgd-nesterov-decoupled", "adam-course", "adamw-prox"]
)
@pytest.mark.slow
def test_compiled_equals_readable(name, options):
    readable, _ = _run(name, options, fused=False, steps=20)
    compiled, opt = _run(name, options, fused=True, steps=20, compile=True)
    for a, b in zip(readable, compiled):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert all(len(flat._functions) == 1 for flat in opt._flat.values()), "the step count must not recompile"


def test_parameters_and_gradients_are_views_of_one_buffer():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    opt = ro.Adam(model.parameters(), fused=True)
    opt.compile = False
    model(torch.randn(5, 4, dtype=torch.float64)).sum().backward()
    opt.step()
    flat = opt._flat[0]
    for p, view, grad in zip(model.parameters(), flat.views(flat.flat_p), flat.views(flat.flat_g)):
        assert p.data_ptr() == view.data_ptr() and p.grad.data_ptr() == grad.data_ptr()
    opt.zero_grad()  # set_to_none is overridden: the views stay, zeroed
    assert all(p.grad is not None and float(p.grad.abs().sum()) == 0 for p in model.parameters())
    model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})  # copies into the views
    assert all(p.data_ptr() == v.data_ptr() for p, v in zip(model.parameters(), flat.views(flat.flat_p)))


def test_fused_state_dict_round_trip_and_readable_interop():
    a, opt_a = _run("Adam", {"lr": 0.01}, fused=True, steps=10)
    buffer = io.BytesIO()
    torch.save(opt_a.state_dict(), buffer)
    for fused in (True, False):  # into a fused and into a readable optimizer
        buffer.seek(0)
        b = [p.detach().clone().requires_grad_() for p in a]
        opt_b = ro.Adam([{"params": b[:2]}, {"params": b[2:], "lr": 0.005}], fused=fused)
        opt_b.compile = False
        opt_b.load_state_dict(torch.load(buffer, weights_only=True))
        for ps, opt in ((b, opt_b),):
            opt.zero_grad()
            sum(((p - 3.0) ** 2).sum() for p in ps).backward()
            opt.step()
        ref = [p.detach().clone().requires_grad_() for p in a]
        opt_r = ro.Adam([{"params": ref[:2]}, {"params": ref[2:], "lr": 0.005}])
        buffer.seek(0)
        opt_r.load_state_dict(torch.load(buffer, weights_only=True))
        opt_r.zero_grad()
        sum(((p - 3.0) ** 2).sum() for p in ref).backward()
        opt_r.step()
        for x, y in zip(b, ref):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


def test_fused_refuses_mixed_dtypes():
    opt = ro.SGD(
        [torch.zeros(2, requires_grad=True), torch.zeros(2, dtype=torch.float64, requires_grad=True)],
        lr=0.1,
        fused=True,
    )
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="one dtype and device"):
        opt.step()


def _compiled_updates(opt):
    return [entry[0] for flat in opt._flat.values() for entry in flat._functions.values()]


def _scheduled_run(fused, steps=12):
    ps = [p.clone().requires_grad_() for p in _params()]
    opt = ro.Adam([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.02}], lr=0.01, weight_decay=0.01, fused=fused)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1 / (1 + epoch))
    for t in range(steps):
        opt.zero_grad()
        sum(((p - 0.3 * t) ** 2 + torch.sin(3 * p)).sum() for p in ps).backward()
        opt.step()
        schedule.step()
        if fused and t == 0:  # from now on the compiled graph runs without dynamo
            for run in _compiled_updates(opt):
                assert run.graph is not None
                run.compiled = None  # calling through dynamo again would fail
    return ps


def test_compiled_graph_is_called_directly_and_reads_each_steps_scalars():
    """After the first step the fast mode calls the compiled graph itself; the learning rate
    (a schedule changes it every step) and the bias corrections still change every step."""
    for a, b in zip(_scheduled_run(fused=False), _scheduled_run(fused=True)):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_transform_that_is_not_one_graph_runs_through_dynamo():
    """Gradient noise draws from its own torch.Generator: dynamo splits the update, so every
    call goes through dynamo (with graph breaks) and the result is still the readable one."""

    def run(fused):
        p = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
        opt = ro.Optimizer([p], ro.chain(ro.add_noise(0.1), ro.scale_by_adam()), lr=0.01, fused=fused)
        for _ in range(4):
            opt.zero_grad()
            (p**2).sum().backward()
            opt.step()
        return p, opt

    (readable, _), (compiled, opt) = run(False), run(True)
    torch.testing.assert_close(compiled, readable, rtol=1e-10, atol=1e-12)
    assert [run.graph for run in _compiled_updates(opt)] == [None]


def test_hyperparameters_cycled_every_step_stop_compiling_after_the_limit(monkeypatch):
    """OneCycleLR cycles momentum at every step: the fast mode compiles COMPILE_LIMIT variants
    per group, warns once, runs later values uncompiled, and still equals the readable mode."""
    monkeypatch.setattr(flat_module, "COMPILE_LIMIT", 2)

    def run(fused):
        ps = [p.clone().requires_grad_() for p in _params()]
        opt = ro.SGD(ps, lr=0.05, momentum=0.9, fused=fused)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=8)
        for t in range(8):
            opt.zero_grad()
            sum(((p - 0.3 * t) ** 2).sum() for p in ps).backward()
            opt.step()
            schedule.step()
        return ps, opt

    readable, _ = run(False)
    with pytest.warns(UserWarning, match=r"\['momentum'\] of a parameter group took more than 2 values") as caught:
        fused, opt = run(True)
    assert sum("took more than" in str(w.message) for w in caught) == 1
    for a, b in zip(readable, fused):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert len(opt._flat[0]._functions) == 2


def test_update_that_cannot_be_compiled_runs_uncompiled_with_a_warning(monkeypatch):
    """No C++ compiler, an unsupported backend: the fast mode warns and stays correct."""
    import torch._inductor.compile_fx

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", broken)
    readable, _ = _run("Adam", {"lr": 0.01}, fused=False, steps=5)
    with pytest.warns(UserWarning, match="could not compile the update"):
        compiled, opt = _run("Adam", {"lr": 0.01}, fused=True, steps=5, compile=True)
    for a, b in zip(readable, compiled):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
    assert all(run.graph is None for run in _compiled_updates(opt))


def _rebinding_run(change, fused):
    """Adam steps a small model, then ``change`` rebinds or rewrites its parameters, then it steps on."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    opt = ro.Adam(model.parameters(), lr=0.05, fused=fused)
    opt.compile = False  # the rebinding is the point here, not the kernel
    x = torch.randn(8, 4)

    def steps(n):
        for _ in range(n):
            opt.zero_grad()
            model(x.to(model[0].weight.dtype)).square().mean().backward()
            opt.step()

    steps(3)
    change(model)
    if not fused:  # the reference: the same moments, cast to the parameters' dtype as load_state_dict casts them
        opt.load_state_dict(opt.state_dict())
    steps(3)
    return model


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.double(),
        lambda m: m.to(torch.float64),
        lambda m: m.load_state_dict({k: v + 0.5 for k, v in m.state_dict().items()}),
        lambda m: setattr(m[0].weight, "data", m[0].weight.data.clone()),
    ],
    ids=["double", "to-float64", "load_state_dict", "data-rebound"],
)
def test_fast_mode_follows_parameters_whose_data_is_rebound(change):
    """model.double(), model.to(...), load_state_dict or ``p.data = ...`` after the fast mode
    pointed the parameters into its buffer: later steps update the parameters as they are now,
    exactly as the readable implementation does."""
    fast, readable = _rebinding_run(change, fused=True), _rebinding_run(change, fused=False)
    for a, b in zip(fast.parameters(), readable.parameters()):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
