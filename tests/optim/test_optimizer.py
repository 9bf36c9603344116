"""Optimizer: a torch.optim.Optimizer stepping a Transform (groups, state, chunks, rebuilt transforms)."""

import pytest
import torch

import reglab.optim as ro


def test_a_builder_is_tried_when_a_group_is_added():
    """A piece passed uncalled (``scale_by_adam`` for ``scale_by_adam()``) or a builder that
    returns no Transform failed only at the first step, the first with 'b1 must be a number,
    got {the whole group}'; now at construction. A refused group is not kept."""
    w = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(
        TypeError, match=r"transform: scale_by_adam builds a piece; pass the piece, scale_by_adam\(...\)"
    ):
        ro.Optimizer(w, ro.scale_by_adam)
    with pytest.raises(TypeError, match="the function group -> Transform returned int, not a Transform"):
        ro.Optimizer(w, lambda group: 3)
    with pytest.raises(ValueError, match=r"b1 must be in \[0.0, 1.0\), got 1.5"):
        ro.Optimizer(w, lambda group: ro.scale_by_adam(b1=group["b1"]), b1=1.5)
    opt = ro.Adam(w)
    with pytest.raises(ValueError, match="eps"):
        opt.add_param_group({"params": [torch.zeros(3, requires_grad=True)], "eps": -1.0})
    assert len(opt.param_groups) == 1, "the refused group was left in the optimizer"


def test_state_is_per_parameter_and_named():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = ro.Adam([a, b])
    a.grad, b.grad = torch.ones(2), torch.ones(3)
    opt.step()
    assert set(opt.state[a]) == {"mu", "nu", "step"} and opt.state[b]["mu"].shape == (3,)
    b.grad = None
    opt.step()
    assert opt.state[a]["step"] == 2 and opt.state[b]["step"] == 1


def test_sparse_gradients_are_refused_unless_the_optimizer_takes_them():
    w = torch.zeros(3, requires_grad=True)
    w.grad = torch.tensor([0.0, 2.0, 0.0]).to_sparse()
    with pytest.raises(RuntimeError, match="Optimizer does not support sparse gradients"):
        ro.Optimizer([w], ro.scale_by_adam()).step()
    ro.SGD([w], lr=0.1).step()  # as torch.optim.SGD (tests/optim/test_alias.py compares the two)
    assert torch.equal(w, torch.tensor([0.0, -0.2, 0.0])) and w.grad.is_sparse


def _many_params():
    g = torch.Generator().manual_seed(1)
    shapes = [(7, 5), (300,), (3, 4, 2), (1,), (50,), (2, 2)]
    return [torch.randn(s, dtype=torch.float64, generator=g) for s in shapes]


OPTIMIZERS = {
    "sgd": lambda ps: ro.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "sgdw-prox": lambda ps: ro.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01, decoupled=True, l1_proximal=0.01),
    "adagrad": lambda ps: ro.Adagrad(ps, lr=0.1),
    "adadelta": lambda ps: ro.Adadelta(ps),
    "rmsprop": lambda ps: ro.RMSprop(ps, lr=0.01, centered=True, momentum=0.5),
    "adam": lambda ps: ro.Adam(ps, amsgrad=True, weight_decay=0.01),
    "adamw": lambda ps: ro.AdamW(ps, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_chunked_step_equals_whole_group_step(name, monkeypatch):
    """An elementwise chain runs over ~CHUNK elements at a time (for cache locality): the
    result is bitwise the same as one call over the whole group."""
    import reglab.optim.optimizer as optimizer

    results = []
    for chunk in (1, 60, 10**9):
        monkeypatch.setattr(optimizer, "CHUNK", chunk)
        params = [p.clone().requires_grad_() for p in _many_params()]
        opt = OPTIMIZERS[name](params)
        g = torch.Generator().manual_seed(2)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g)
            opt.step()
        results.append([p.detach().clone() for p in params])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_chunks_cover_the_group_and_global_pieces_see_all_of_it(monkeypatch):
    import reglab.optim.optimizer as optimizer

    params = _many_params()
    ranges = optimizer.chunks(params, 60)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(params)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(hi - lo == 1 or sum(p.numel() for p in params[lo:hi]) <= 60 for lo, hi in ranges)

    calls = []

    def record(updates, state, ctx):
        calls.append(len(updates))
        return updates

    monkeypatch.setattr(optimizer, "CHUNK", 1)
    elementwise = ro.Transform(lambda p: {}, record, elementwise=True)
    for transform, expected in (
        (elementwise, [1] * len(params)),
        (ro.chain(ro.clip_by_global_norm(1.0), elementwise), [len(params)]),
    ):
        ws = [p.clone().requires_grad_() for p in params]
        for w in ws:
            w.grad = torch.ones_like(w)
        calls.clear()
        ro.Optimizer(ws, transform, lr=1.0).step()
        assert calls == expected
    n = sum(p.numel() for p in params)  # clipped by the norm of the whole group: every entry 1/√n
    assert all(torch.allclose(p - w.detach(), torch.full_like(p, n**-0.5)) for p, w in zip(params, ws))


def test_transform_is_rebuilt_only_when_a_hyperparameter_other_than_lr_changes():
    """A ``group -> Transform`` function is called once per distinct set of hyperparameters
    (lr excepted): a change in place (a list, a tensor) counts as a change."""
    import reglab.optim.optimizer as optimizer

    built = []

    def make(group):
        factor = float(group["factor"][0])
        built.append(factor)
        return ro.scale(factor)

    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = ro.Optimizer([w], make, lr=1.0, factor=[2.0])
    group = opt.param_groups[0]
    expected = 0.0
    for lr, factor in ((1.0, None), (1.0, None), (0.5, None), (0.5, 3.0), (0.5, "tensor"), (0.5, 5.0)):
        group["lr"] = lr
        if factor == "tensor":
            group["factor"] = torch.tensor([4.0], dtype=torch.float64)
        elif factor is not None:
            group["factor"][0] = factor  # in place: a list, then a tensor
        w.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        expected -= lr * float(group["factor"][0])
        assert w.item() == expected
    assert built == [2.0, 3.0, 4.0, 5.0]

    for k in range(3 * optimizer.TRANSFORMS_KEPT):  # a new value at every step (cycled momentum): bounded
        group["factor"] = [float(k)]
        opt.step()
    assert len(opt._transforms) == optimizer.TRANSFORMS_KEPT
