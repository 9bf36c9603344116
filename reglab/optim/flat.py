"""Fast mode (``fused=True``): one flat buffer per parameter group, one compiled update.

The readable implementation runs every piece on lists of tensors. The fast mode runs the very
same Transform on a single tensor per group and compiles the whole step (the chain, then
``W ← W − η u``, then any proximal step) with ``torch.compile``, which fuses it into one pass
over memory, as PyTorch's fused optimizers do:

- parameters become views into one contiguous buffer ``flat_p``, gradients views into
  ``flat_g`` (autograd accumulates into them in place), and each state tensor a view into one
  buffer per name; ``optimizer.state[p]`` keeps the per-parameter views, so ``state_dict`` and
  ``load_state_dict`` work unchanged;
- step-dependent numbers (bias corrections, schedules: whatever a piece asks
  ``ctx.per_step`` for) are computed on the host once per step and enter the kernel in one
  small tensor, written in place, like the learning rate, so neither the step nor an lr
  schedule recompiles; other hyperparameters are compiled in: a change compiles once more per
  distinct value, up to ``COMPILE_LIMIT`` variants per group, after which (OneCycleLR or
  CyclicLR cycling momentum, say) new values run uncompiled on the flat buffers, with a
  warning, instead of compiling at every step;
- the compiled update belongs to one group's buffers, which never change shape, and pieces
  are pure functions of tensors, so once compiled as one graph it is called directly, without
  dynamo's per-call guards and wrappers, whose cost per call is of the order of a small model's
  whole fused step (BENCHMARKS.md);
- the whole group steps together: a parameter without a gradient counts as a zero gradient,
  and ``zero_grad`` zeroes the gradient buffer instead of setting gradients to ``None``;
- code that rebinds a parameter's data (``model.to(...)``, ``model.double()``, ``p.data = ...``)
  takes it out of the buffer: each step checks where the parameters live and, when one has
  moved, builds the group's buffers anew from the parameters and the state as they are.

tests/optim/test_flat.py checks that it equals the readable implementation.
"""

from __future__ import annotations

import itertools
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from reglab.errors import ReglabError
from reglab.optim.base import Context, Deferred, Transform, hyper_key


def _update(
    transform: Transform, hyper: dict[str, Any], p: Tensor, g: Tensor, state: dict[str, Tensor], scalars: Tensor
) -> None:
    """One step of ``transform`` on flat tensors, in place: the function that gets compiled.
    ``scalars`` holds the learning rate, the step ``t`` and then this step's ``ctx.per_step``
    numbers, computed on the host in call order (one small tensor: one host-to-kernel copy)."""
    lr, t, values = scalars[0], scalars[1], scalars[2:]
    index = iter(range(len(values)))
    ctx = Context([p], [g], [t], {**hyper, "lr": lr}, lambda fn: [values[next(index)]])
    lists = {name: [s] for name, s in state.items()}
    out = transform.update([g], lists, ctx)
    if isinstance(out, Deferred):  # the readable mode's Deferred.apply, on one tensor
        if out.decay is not None:
            p.mul_(1 - lr * (out.decay[0] if isinstance(out.decay, list) else out.decay))
        step = lr if out.scale is None else lr * out.scale[0]
        u = out.num[0] if out.den is None else out.num[0] / out.den[0]
    else:
        step, u = lr, out[0]
    p.sub_(u * step)
    if transform.after_step is not None:
        transform.after_step(lists, ctx)


def _per_step_functions(transform: Transform, hyper: dict[str, Any], like: Tensor) -> list[Callable[[int], float]]:
    """The functions the transform passes to ``ctx.per_step``, in call order, found by running
    it once on empty tensors (no real state is touched)."""
    found: list[Callable[[int], float]] = []
    empty = like.new_zeros(0)
    zero = torch.zeros((), dtype=torch.float64, device=like.device)

    def record(fn):
        found.append(fn)
        return [zero]

    ctx = Context([empty], [empty], [1], {**hyper, "lr": 0.0}, record)
    state = transform.init([empty])
    transform.update([empty], state, ctx)
    if transform.after_step is not None:
        transform.after_step(state, ctx)
    return found


class FlatGroup:
    """The flat buffers of one parameter group and its compiled update functions."""

    def __init__(self, params: list[Tensor], densify: Callable[[list[Tensor]], list[Tensor]]) -> None:
        if len({(p.dtype, p.device) for p in params}) != 1 or any(p.is_sparse for p in params):
            raise ReglabError("fused=True needs the parameters of a group to share one dtype and device (and be dense)")
        if params[0].is_complex():
            raise ReglabError(
                "fused=True supports real floating-point parameters only; step complex ones with fused=False"
            )
        self.params = params
        self.densify = densify  # a sparse gradient as a dense one, or the optimizer's error
        self.flat_p = torch.cat([p.detach().reshape(-1) for p in params])
        self.flat_g = torch.zeros_like(self.flat_p)
        self.grad_views = self.views(self.flat_g)
        for p, view, grad in zip(params, self.views(self.flat_p), self.grad_views):
            if p.grad is not None:
                grad.copy_(self.densify([p.grad])[0] if p.grad.is_sparse else p.grad)
            p.data = view
            p.grad = grad
        self.addresses = [p.data_ptr() for p in params]  # where each parameter's data lives: in flat_p
        self.state: dict[str, Tensor] = {}
        self.state_views: dict[str, list[Tensor]] = {}
        self.t = 0  # steps taken by the group
        self.step_count = torch.zeros((), dtype=torch.int64)  # the same tensor is every parameter's state["step"]
        self.step_array = self.step_count.numpy()  # written through NumPy: ~0.2 us, fill_ ~3 us
        self.dirty = True  # per-parameter state must be (re)gathered into the buffers
        self._functions: dict[Any, tuple] = {}  # hyperparameters -> (update, per-step functions, transform, scalars)
        self._compiled = 0  # compiled variants so far
        self._uncompiled: tuple = (None, None)  # the latest uncompiled variant: (key, entry)

    def moved(self) -> bool:
        """Whether a parameter's data no longer lives in ``flat_p``: ``model.to(...)``,
        ``model.double()`` or ``p.data = ...`` rebound it (one pointer per parameter compared)."""
        return [p.data_ptr() for p in self.params] != self.addresses

    def views(self, flat: Tensor) -> list[Tensor]:
        out, offset = [], 0
        for p in self.params:
            out.append(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        return out

    def gather_grads(self) -> None:
        """Make every ``p.grad`` a view of ``flat_g`` again (a user may have replaced it)."""
        for p, view in zip(self.params, self.grad_views):
            grad = p.grad
            if grad is view:
                continue
            if grad is None:
                view.zero_()
            else:  # (autograd adds a sparse gradient into the dense view: this is a new one)
                view.copy_(self.densify([grad])[0] if grad.is_sparse else grad)
            p.grad = view

    def sync_state(self, per_param: dict[Tensor, dict[str, Any]], transform: Transform) -> None:
        """Flat state buffers, filled from and exposed as ``per_param`` views (after a
        ``load_state_dict``, or readable steps, the per-parameter tensors are copied in)."""
        if not self.state:
            self.state = {name: tensors[0] for name, tensors in transform.init([self.flat_p]).items()}
            self.state_views = {name: self.views(flat) for name, flat in self.state.items()}
        for name, views in self.state_views.items():
            for p, view in zip(self.params, views):
                current = per_param[p].get(name)
                if current is not view:
                    if current is not None:
                        view.copy_(current)
                    per_param[p][name] = view
        steps = {int(per_param[p].get("step", 0)) for p in self.params}
        if len(steps) != 1:
            raise RuntimeError("fused=True steps a group as one: its parameters have different step counts")
        self.t = steps.pop()
        self.step_count.fill_(self.t)
        for p in self.params:
            per_param[p]["step"] = self.step_count
        self.dirty = False

    def step(
        self, make_transform: Callable[[dict[str, Any]], Transform], group: dict[str, Any], per_param, compile: bool
    ) -> None:
        """One step of the group; the transform is built (and compiled) once per distinct set
        of hyperparameters, the learning rate excepted."""
        key = hyper_key(group)
        entry = self._functions.get(key)
        if entry is None and self._uncompiled[0] == key:
            entry = self._uncompiled[1]
        if entry is None:
            entry = self._variant(key, make_transform, group, compile)
        run, per_step, transform, scalars = entry
        if self.dirty:  # new, or after load_state_dict: bring per-parameter state into the buffers
            self.sync_state(per_param, transform)
        self.t += 1
        self.step_array[()] = self.t  # the tensor shared by every parameter's state["step"]
        scalars.write([float(group["lr"]), float(self.t), *(float(fn(self.t)) for fn in per_step)])
        run(self.flat_p, self.flat_g, self.state, scalars.tensor)

    def _variant(
        self, key: tuple, make_transform: Callable[[dict[str, Any]], Transform], group: dict[str, Any], compile: bool
    ) -> tuple:
        """The update for a new set of hyperparameters: compiled (and kept) while the group has
        fewer than ``COMPILE_LIMIT`` compiled variants, else run uncompiled (only the latest
        uncompiled variant is kept: a schedule may produce a new one at every step)."""
        hyper = {k: v for k, v in group.items() if k not in ("params", "lr")}
        transform = make_transform(group)
        per_step = _per_step_functions(transform, hyper, self.flat_p)
        scalars = _Scalars(2 + len(per_step), self.flat_p.device)
        if compile and self._compiled < COMPILE_LIMIT:
            self._compiled += 1
            entry = self._functions[key] = (_Compiled(transform, hyper), per_step, transform, scalars)
            return entry
        if compile and self._compiled == COMPILE_LIMIT:
            self._compiled += 1  # warn once
            first = dict(next(iter(self._functions), ()))
            changed = [k for k, v in hyper.items() if repr(first.get(k)) != repr(v)]
            warnings.warn(
                f"fused=True: hyperparameters {changed} of a parameter group took more than {COMPILE_LIMIT} values;"
                " new values run uncompiled (a schedule that changes them at every step, such as cycled momentum,"
                " would otherwise compile at every step)",
                stacklevel=5,
            )
        entry = (lambda *a: _update(transform, hyper, *a), per_step, transform, scalars)
        self._uncompiled = (key, entry)
        return entry


COMPILE_LIMIT = 8  # compiled variants of the update per parameter group


class _Scalars:
    """The step's numbers (lr, t, per-step values) in one float64 tensor on the group's
    device, written in place each step: the compiled update reads the same tensor every time."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.tensor = torch.zeros(size, dtype=torch.float64, device=device)
        self.host = self.tensor if self.tensor.device.type == "cpu" else torch.zeros(size, dtype=torch.float64)
        self.array = self.host.numpy()  # writing through NumPy costs ~1 us, a tensor op ~10 us

    def write(self, values: list[float]) -> None:
        self.array[:] = values
        if self.host is not self.tensor:
            self.tensor.copy_(self.host)  # from pageable memory: done before host memory is reused


_count = itertools.count()


class _Compiled:
    """``_update`` compiled for one transform and one group's buffers: ``run(p, g, state,
    scalars)``.

    Each gets a code object of its own: dynamo caches compiled graphs per code object (8 at
    most), and a process may hold many optimizers (a study, a test suite). The first call goes
    through dynamo with ``fullgraph=True``; the graph inductor compiles is kept (``graph``)
    with the tensors it was traced on (the group's buffers and scalars tensor, fixed for the
    group's life), and later calls with those same tensors run it directly. What dynamo's
    guards would check cannot change for them: shapes, dtypes and devices are the buffers',
    hyperparameters are compiled into this function, steps run under ``no_grad``, and pieces
    have no Python side effects to replay. A transform that does not trace as one graph (e.g.
    a piece with its own ``torch.Generator``) runs through dynamo on every call, with graph
    breaks; one that cannot be compiled at all (no C++ compiler, unsupported backend) runs
    uncompiled, with a warning.
    """

    def __init__(self, transform: Transform, hyper: dict[str, Any]) -> None:
        code = _update.__code__.replace(co_name=f"_update_{next(_count)}")
        self.fresh = types.FunctionType(code, _update.__globals__, code.co_name)
        self.transform, self.hyper = transform, hyper
        self.traced: list[tuple[Callable, list]] = []  # what the backend compiled: (graph, its inputs)
        self.compiled: Callable = torch.compile(self.fresh, backend=self._keep, dynamic=False, fullgraph=True)
        self.graph: tuple[Callable, list, tuple] | None = None  # (graph, its inputs, the arguments traced)

    def _keep(self, gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        from torch._inductor.compile_fx import compile_fx

        graph = compile_fx(gm, example_inputs)
        self.traced.append((graph, list(example_inputs)))
        return graph

    def __call__(self, *args: Any) -> None:
        if self.graph is not None and all(a is b for a, b in zip(args, self.graph[2])):
            self.graph[0](*self.graph[1])
            return
        try:
            self.compiled(self.transform, self.hyper, *args)
        except torch._dynamo.exc.Unsupported:  # not one graph: dynamo splits it, and every call goes through it
            self.compiled, self.traced = torch.compile(self.fresh, dynamic=False), None
            self(*args)
            return
        except Exception as e:  # no C++ compiler, unsupported backend, ...: stay correct, lose speed
            warnings.warn(
                f"fused=True could not compile the update ({type(e).__name__}: {e}); running it uncompiled",
                stacklevel=4,
            )
            self.compiled, self.traced = _update, None
            _update(self.transform, self.hyper, *args)
            return
        if (
            self.graph is None
            and self.traced
            and len(self.traced) == 1
            and all(isinstance(x, Tensor) for x in self.traced[0][1])
        ):
            self.graph = (*self.traced[0], args)
