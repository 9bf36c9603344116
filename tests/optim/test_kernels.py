"""The kernel path (reglab/optim/kernels.py) against the readable chain it replaces."""

import io

import pytest
import torch

import reglab.optim as ro

KERNEL_OPTIONS = [
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"maximize": True, "weight_decay": 0.05}),
    ("Adam", {"decoupled": True}),  # no decay to decouple
    ("AdamW", {"weight_decay": 0.0, "amsgrad": True, "maximize": True}),
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
    ("SGD", {"lr": 0.02, "momentum": 0.9}),
    ("SGD", {"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.02, "momentum": 0.5, "maximize": True}),
    # the proximal L1 step after the kernel's update (its threshold ηα zeroes some weights)
    ("Adam", {"lr": 0.05, "l1_proximal": 0.5}),
    ("Adam", {"lr": 0.05, "l1_proximal": 0.5, "weight_decay": 0.1, "amsgrad": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "l1_proximal": 1.0}),
]
CHAIN_ONLY = [
    ("AdamW", {}),  # decoupled decay: the kernel's (1 − ηλ) is rounded to float32
    ("Adam", {"weight_decay": 0.1, "decoupled": True}),
    ("Adam", {"eps_in_sqrt": True}),
    ("Adam", {"bias_correction": False}),
    ("Adam", {"clip_norm": 1.0}),
    ("Adam", {"clip_value": 0.1}),
    ("Adam", {"l1": 1e-3}),
    ("AdamW", {"weight_decay_schedule": lambda t: 0.5}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}),  # a ← g at step 1, then (1 − d) g: the chain
    ("SGD", {"lr": 0.1, "weight_decay": 0.1, "decoupled": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "clip_norm": 1.0}),
    ("AdamW", {"weight_decay": 0.1, "l1_proximal": 1e-3}),  # decoupled decay, with the proximal step
    ("RMSprop", {"lr": 0.01}),
]


def _params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype).requires_grad_() for shape in [(), (7,), (5, 3), (33, 17)]]


def _run(name, options, dtype, steps, kernel, seed=0):
    params = _params(dtype, seed)
    opt = getattr(ro, name)(params, **options)
    opt.use_kernel = kernel
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(((p - torch.randn(p.shape, generator=g, dtype=dtype)) ** 2).sum() + p.sin().sum() for p in params)
        loss.backward()
        opt.step()
    return params, opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "options"), KERNEL_OPTIONS)
def test_kernel_path_equals_the_chain(name, options, dtype):
    fast, opt = _run(name, options, dtype, 25, kernel=True)
    slow, ref = _run(name, options, dtype, 25, kernel=False)
    assert opt._kernel_groups, "the kernel path was not taken"
    assert not ref._kernel_groups
    tol = 1e-6 if dtype == torch.float32 else 1e-12

    @torch.no_grad()
    def close(x, y):  # to rounding at the tensors' own scale (a momentum buffer grows to ~10 g)
        torch.testing.assert_close(x, y, rtol=tol, atol=tol * max(1.0, float(y.abs().max())))

    for a, b in zip(fast, slow):
        close(a, b)
    if options.get("l1_proximal"):  # the proximal step did its work: weights exactly zero on both paths
        assert sum(int((a == 0).sum()) for a in fast) >= 5 and sum(int((b == 0).sum()) for b in slow) >= 5
    for a, b in zip(fast, slow):
        for key in ref.state[b]:
            close(torch.as_tensor(opt.state[a][key], dtype=dtype), torch.as_tensor(ref.state[b][key], dtype=dtype))


@pytest.mark.parametrize(("name", "options"), CHAIN_ONLY)
def test_options_the_kernel_does_not_compute_take_the_chain(name, options):
    _, opt = _run(name, options, torch.float32, 3, kernel=True)
    assert not opt._kernel_groups


def test_a_parameter_without_gradient_takes_the_chain_for_that_step():
    params = _params(torch.float32)
    opt = ro.Adam(params, 1e-2)
    ref_params = [p.detach().clone().requires_grad_() for p in params]
    ref = ro.Adam(ref_params, 1e-2)
    ref.use_kernel = False
    for step in range(6):
        for ps, o in ((params, opt), (ref_params, ref)):
            o.zero_grad()
            used = ps if step != 2 else ps[1:]  # step 2: the first parameter gets no gradient
            sum((p**2).sum() + p.cos().sum() for p in used).backward()
            o.step()
    for a, b in zip(params, ref_params):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert int(opt.state[params[0]]["step"]) == 5 and int(opt.state[params[1]]["step"]) == 6


def test_state_dict_moves_between_the_kernel_and_the_chain():
    """Saved after kernel steps, loaded into an optimizer that steps through the chain (and back):
    the run goes on as if it had not been interrupted."""
    whole, _ = _run("Adam", {"amsgrad": True}, torch.float64, 12, kernel=True)
    params, opt = _run("Adam", {"amsgrad": True}, torch.float64, 6, kernel=True)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed = ro.Adam(params, amsgrad=True)
    resumed.use_kernel = False
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    g = torch.Generator().manual_seed(1)
    for _ in range(6):  # the same gradients as steps 1..6 of the run: replay the generator
        [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    for step in range(6):
        resumed.use_kernel = step % 2 == 0  # alternate: each switch rebuilds the other path's view
        resumed.zero_grad()
        targets = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
        loss = sum(((p - t) ** 2).sum() + p.sin().sum() for p, t in zip(params, targets))
        loss.backward()
        resumed.step()
    for a, b in zip(params, whole):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert int(resumed.state[params[0]]["step"]) == 12


def test_a_loaded_state_replaces_the_kernels_lists():
    params, opt = _run("Adam", {}, torch.float32, 3, kernel=True)
    saved = {k: v for k, v in opt.state_dict().items()}
    saved = {"state": {i: {n: t.clone() for n, t in s.items()} for i, s in saved["state"].items()},
             "param_groups": saved["param_groups"]}  # fmt: skip
    for s in saved["state"].values():
        s["mu"].zero_()
    opt.load_state_dict(saved)
    opt.zero_grad()
    sum((p**2).sum() for p in params).backward()
    opt.step()
    assert opt.state[params[0]]["mu"] is opt._kernel_groups[0].lists["mu"][0]
    assert int(opt.state[params[2]]["step"]) == 4


def test_the_sgd_kernel_leaves_the_gradients_as_they_were():
    """torch.optim.SGD's loop adds the decay to a copy of the gradient; so must the kernel path
    (a gradient read after the step, by a probe or a gradient-norm record, is the loss's)."""
    params = _params(torch.float32)
    opt = ro.SGD(params, 0.1, momentum=0.9, weight_decay=0.1, maximize=True)
    sum((p**2).sum() + p.sin().sum() for p in params).backward()
    before = [p.grad.clone() for p in params]
    opt.step()
    assert opt._kernel_groups
    for p, g in zip(params, before):
        assert torch.equal(p.grad, g)


def test_the_sgd_kernel_path_follows_torch_optim_sgd():
    """The drop-in promise on the kernel path: the trajectory of torch.optim.SGD (its own fused
    kernel and its for-loop), momentum and Nesterov with coupled decay, in float64."""
    for options in ({"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, {"momentum": 0.8}, {}):
        ours, opt = _run("SGD", {"lr": 0.03, **options}, torch.float64, 20, kernel=True)
        assert opt._kernel_groups
        params = _params(torch.float64)
        ref = torch.optim.SGD(params, lr=0.03, foreach=False, **options)
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            ref.zero_grad()
            sum(((p - torch.randn(p.shape, generator=g, dtype=torch.float64)) ** 2).sum() + p.sin().sum()
                for p in params).backward()  # fmt: skip
            ref.step()
        for a, b in zip(ours, params):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
