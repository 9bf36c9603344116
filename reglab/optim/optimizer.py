"""Optimizer: a ``torch.optim.Optimizer`` whose update rule is a Transform (base.py).

Each ``step()`` runs, per parameter group, ``u = transform.update(g, ...)`` and then
``W ← W − η u`` with ``η = group["lr"]``, so that ``torch.optim.lr_scheduler`` schedules work
unchanged. A transform whose pieces are all ``elementwise`` runs on ~1 MB chunks of the group's
tensors in turn, for cache locality. Per-parameter state lives in ``optimizer.state[p]`` under
the transforms' names (plus ``step``), so ``state_dict``/``load_state_dict`` behave as for any
PyTorch optimizer (and take a torch.optim optimizer's ``state_dict`` too). ``fused=True`` steps
each group on flat buffers with one compiled update (flat.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from reglab._checks import check_bool, check_lr
from reglab.errors import ReglabError, ReglabTypeError
from reglab.optim.base import Context, Transform, apply_updates, as_real, hyper_key
from reglab.optim.flat import FlatGroup
from reglab.optim.kernels import KernelGroup, kernel_ready

TRANSFORMS_KEPT = 16  # transforms an Optimizer keeps, one per distinct set of hyperparameters

CHUNK = 2**18  # elements: the tensors an elementwise update runs over at once (~1 MB each in float32)


def chunks(params: list[Tensor], size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges of consecutive tensors of about ``size`` elements (at least one tensor
    each). An elementwise chain runs chunk by chunk, so that a chunk's parameters, gradients and
    state stay in cache from one piece to the next, as they do in torch.optim's for-loop step,
    while small tensors still share one ``_foreach`` call."""
    out, lo, count = [], 0, 0
    for i, p in enumerate(params):
        if count and count + p.numel() > size:
            out.append((lo, i))
            lo, count = i, 0
        count += p.numel()
    out.append((lo, len(params)))
    return out


def _torch(name: str) -> Callable[..., Any]:
    """torch.optim.Optimizer's method ``name`` as eager code calls it: without the
    ``torch._disable_dynamo`` wrapper (add_param_group, state_dict, load_state_dict), whose first
    call imports ``torch._dynamo``: 1.2-1.7 s of every process that builds or saves an
    optimizer (BENCHMARKS.md). Under ``torch.compile`` the wrapped method runs, as in torch."""
    method = getattr(torch.optim.Optimizer, name)
    if torch.compiler.is_compiling():
        return method
    return getattr(method, "__wrapped__", method)


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose update rule is a Transform.

    ``transform`` is a Transform, or a function ``group -> Transform`` of the group's
    hyperparameters (how the named optimizers let schedulers change them): it is called again
    whenever a hyperparameter other than the learning rate has changed since the last step
    (a piece reads ``lr`` from ``ctx.group`` at update time). ``lr`` may be a number or, as in
    torch.optim, a one-element tensor that a scheduler changes in place; complex parameters
    are stepped as torch.optim steps them (see ``as_real``).
    ``fused=True`` selects the fast mode (reglab/optim/flat.py): one flat buffer per group and
    one compiled update, equal to the readable implementation; ``compile=False`` keeps the
    flat buffers but runs the update uncompiled. Otherwise a group whose chain one of
    PyTorch's fused kernels computes exactly (plain Adam; SGD without dampening; either with
    proximal L1) is stepped by that kernel (kernels.py); ``use_kernel = False`` on an optimizer
    steps every group through the chain.
    """

    sparse_grads = False  # takes sparse gradients (torch.optim's SGD and Adagrad do)
    use_kernel = True  # step a group with PyTorch's fused kernel where it computes the chain (kernels.py)
    # torch.optim's names -> ours, for loading a torch.optim checkpoint of the same optimizer
    torch_state_names: dict[str, str] = {}  # per-parameter state (exp_avg -> mu, ...)
    torch_group_names: dict[str, str] = {}  # group options (decoupled_weight_decay -> decoupled)

    def __init__(
        self,
        params: Iterable,
        transform: Transform | Callable[[dict[str, Any]], Transform],
        lr: float = 1.0,
        *,
        fused: bool | None = None,
        compile: bool = True,
        **defaults: Any,
    ) -> None:
        check_lr(lr)
        if fused is not None:
            check_bool("fused", fused)
        check_bool("compile", compile)
        if not isinstance(transform, Transform) and not callable(transform):
            raise ReglabTypeError(
                f"transform must be a Transform or a function group -> Transform, got {transform!r} "
                f"({type(transform).__name__})"
            )
        if inspect.isfunction(transform) and transform.__module__.startswith(
            "reglab.optim"
        ):  # a piece's builder, uncalled
            raise ReglabTypeError(
                f"transform: {transform.__name__} builds a piece; pass the piece, {transform.__name__}(...)"
            )
        self._transform = transform
        self.fused = bool(fused)
        self.compile = compile
        self._flat: dict[int, FlatGroup] = {}  # fast mode: param-group index -> flat buffers
        self._transforms: dict[tuple, Transform] = {}  # hyper_key(group) -> transform built for it
        self._kernel_fns: dict[tuple, Any] = {}  # hyper_key(group) -> kernel_for(group)
        self._kernel_groups: dict[int, KernelGroup] = {}  # kernel path: param-group index -> its lists
        self._complex = False  # some parameter is complex: steps run on real views (see as_real)
        super().__init__(params, {"lr": lr, "fused": fused, **defaults})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _torch("add_param_group")(self, param_group)
        group = self.param_groups[-1]
        try:
            self.check_group(group)
        except Exception:
            self.param_groups.pop()  # a refused group is not kept
            raise
        self._complex = self._complex or any(p.is_complex() for p in group["params"])

    def check_group(self, group: dict[str, Any]) -> None:
        """Raise for a group this optimizer cannot step, when the group is added: a builder
        ``group -> Transform`` is called on it now rather than at the first step."""
        if not isinstance(self._transform, Transform):
            built = self.transform_for({**group, "lr": float(group["lr"])})
            if not isinstance(built, Transform):
                raise ReglabTypeError(
                    f"transform: the function group -> Transform returned {type(built).__name__}, not a Transform"
                )

    def transform_for(self, group: dict[str, Any]) -> Transform:
        """The group's transform, built once per distinct set of hyperparameters (and kept for
        the ``TRANSFORMS_KEPT`` latest), so that a step does not rebuild its chain."""
        t = self._transform
        if isinstance(t, Transform):
            return t
        key = hyper_key(group)
        transform = self._transforms.get(key)
        if transform is None:
            if len(self._transforms) == TRANSFORMS_KEPT:  # cycled momentum: a new key every step
                del self._transforms[next(iter(self._transforms))]
            transform = self._transforms[key] = t(group)
        return transform

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.begin_step()
        for index, group in enumerate(self.param_groups):
            if self.fused:
                self._fast_step(index, group)
                continue
            if self.use_kernel and not self._complex and self._kernel_step(index, group):
                continue
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if isinstance(group["lr"], Tensor):  # a one-element tensor, as torch.optim allows
                group = {**group, "lr": group["lr"].item()}
            transform = self.transform_for(group)
            state = self._gather_state(params, transform)
            steps = state.pop("step")
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                grads = self.densify(grads)
            if self._complex:
                params, grads = as_real(params), as_real(grads)
                state = {name: as_real(tensors) for name, tensors in state.items()}
            for lo, hi in chunks(params, CHUNK) if transform.elementwise else [(0, len(params))]:
                part = params[lo:hi]
                part_state = {name: tensors[lo:hi] for name, tensors in state.items()}
                ctx = Context(part, grads[lo:hi], steps[lo:hi], group)
                updates = transform.update(ctx.grads, part_state, ctx)
                apply_updates(part, updates, group["lr"])
                if transform.after_step is not None:
                    transform.after_step(part_state, ctx)
                del updates  # free this chunk's temporaries: the next chunk's reuse their (cached) memory
        return loss

    def kernel_for(self, group: dict[str, Any]) -> Callable[..., None] | None:
        """A fused kernel that computes this group's chain exactly, ``run(params, grads,
        state_lists, steps, lr)``, or None (the chain steps it): kernels.py."""
        return None

    def _kernel_step(self, index: int, group: dict[str, Any]) -> bool:
        """Step the group with its kernel, where it has one and every parameter can take it;
        whether it did."""
        key = hyper_key(group)
        if key not in self._kernel_fns:
            if len(self._kernel_fns) == TRANSFORMS_KEPT:
                del self._kernel_fns[next(iter(self._kernel_fns))]
            self._kernel_fns[key] = self.kernel_for({**group, "lr": float(group["lr"])})
        run = self._kernel_fns[key]
        params = group["params"]
        if run is None or not params or not kernel_ready(params):
            return False
        kernel = self._kernel_groups.get(index)
        if kernel is None or not kernel.current(params, self.state):
            transform = self.transform_for({**group, "lr": float(group["lr"])})
            self._init_state(params, transform)
            names = tuple(n for n in self.state[params[0]] if n != "step")
            kernel = self._kernel_groups[index] = KernelGroup(params, self.state, names)
        if not kernel.usable:  # state of another dtype or device (model.double() after some steps): the chain
            return False
        kernel.count()
        run(params, [p.grad for p in params], kernel.lists, kernel.steps, float(group["lr"]))
        return True

    def begin_step(self) -> None:
        """Called once per step, after the closure and before any group steps: where a subclass
        resets what it computes once per step for all its groups (the named optimizers' norm)."""

    def _fast_step(self, index: int, group: dict[str, Any]) -> None:
        params = group["params"]
        if not params:
            return
        flat = self._flat.get(index)
        if flat is None or flat.moved():  # new, or a parameter's data was rebound since: buffers anew
            flat = self._flat[index] = FlatGroup(params, self.densify)
            flat.dirty = True
        flat.gather_grads()
        flat.step(self.transform_for, group, self.state, self.compile)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim's; in fast mode gradients stay views of the flat buffer, zeroed."""
        for index, group in enumerate(self.param_groups):
            flat = self._flat.get(index)
            if flat is not None and flat.moved():  # rebuilt at the next step; zero the gradients as they are
                del self._flat[index]
                flat = None
            if flat is not None:
                flat.gather_grads()
                flat.flat_g.zero_()
                continue
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.detach_().requires_grad_(False).zero_()

    def densify(self, grads: list[Tensor]) -> list[Tensor]:
        """Sparse gradients (``nn.Embedding(sparse=True)``) as dense ones, where the optimizer
        takes them: for SGD and Adagrad the chain then makes torch.optim's sparse update (a row
        without gradient gets a zero step, or its momentum's; tested against torch.optim)."""
        if not self.sparse_grads:
            raise RuntimeError(
                f"{type(self).__name__} does not support sparse gradients, as in torch.optim (SGD and Adagrad do)"
            )
        return [g.to_dense() if g.is_sparse else g for g in grads]

    def state_dict(self) -> dict[str, Any]:
        """As torch.optim's."""
        return _torch("state_dict")(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch.optim's, and it also takes the ``state_dict`` of the torch.optim optimizer
        this one replaces: its state and options are renamed, and options torch.optim does not
        have keep this optimizer's values, so a run started with torch.optim continues here."""
        converted = self._from_torch(state_dict)
        self._check_loaded(state_dict, converted)
        _torch("load_state_dict")(self, converted)
        for flat in self._flat.values():
            flat.dirty = True

    def _check_loaded(self, saved: dict[str, Any], converted: dict[str, Any]) -> None:
        """Before anything is replaced: each parameter's saved state has the names this
        optimizer keeps (under the loaded options) and its parameter's shape, so that another
        optimizer's state, or another model's, is refused now rather than failing a later step."""
        if len(converted["param_groups"]) != len(self.param_groups):
            return  # torch.optim's own check says what is wrong
        for loaded, current in zip(converted["param_groups"], self.param_groups):
            if len(loaded["params"]) != len(current["params"]):
                return  # as above
            keeps = None
            for index, p in zip(loaded["params"], current["params"]):
                state = converted["state"].get(index)
                if not state:
                    continue
                if keeps is None:
                    probe = p.new_zeros(1, dtype=p.real.dtype if p.is_complex() else p.dtype)
                    keeps = {"step", *self.transform_for({**loaded, "lr": float(loaded["lr"])}).init([probe])}
                if set(state) != keeps:
                    names = (
                        ", ".join(sorted(saved["state"][index]))
                        if index in saved["state"]
                        else ", ".join(sorted(state))
                    )
                    raise ReglabError(
                        f"load_state_dict: parameter {index}'s saved state holds {names}, but this "
                        f"{type(self).__name__} "
                        f"keeps {', '.join(sorted(keeps))} with these options: the state_dict is another optimizer's "
                        "(or one with other options, e.g. amsgrad)"
                    )
                for name, value in state.items():
                    if isinstance(value, Tensor) and value.ndim and value.shape != p.shape:
                        raise ReglabError(
                            f"load_state_dict: parameter {index}'s saved {name!r} has shape {tuple(value.shape)}, the "
                            "parameter "
                            f"{tuple(p.shape)}: the state_dict belongs to another model (or the parameters are in "
                            "another order)"
                        )

    def _from_torch(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        if len(state_dict["param_groups"]) != len(self.param_groups):
            return state_dict  # torch.optim's own check says what is wrong
        states, names = {}, self.torch_state_names
        for index, saved in state_dict["state"].items():
            state = {  # SGD's momentum_buffer may be None, or sparse (after sparse gradients)
                names.get(k, k): v.to_dense() if isinstance(v, Tensor) and v.is_sparse else v
                for k, v in saved.items()
                if v is not None
            }
            if state and "step" not in state:
                state["step"] = 1  # torch.optim.SGD counts no steps; a momentum buffer means one was taken
            states[index] = state
        groups = []
        for saved, current in zip(state_dict["param_groups"], self.param_groups):
            renamed = {self.torch_group_names.get(k, k): v for k, v in saved.items()}
            groups.append({**{k: v for k, v in current.items() if k != "params"}, **renamed})
        return {**state_dict, "state": states, "param_groups": groups}

    def _gather_state(self, params: list[Tensor], transform: Transform) -> dict[str, list]:
        """Per-parameter state (created on first use) as lists over ``params``; steps += 1."""
        self._init_state(params, transform)
        for p in params:
            self.state[p]["step"] = int(self.state[p]["step"]) + 1  # int: a fast-mode state holds a tensor
        names = self.state[params[0]].keys()
        return {name: [self.state[p][name] for p in params] for name in names}

    def _init_state(self, params: list[Tensor], transform: Transform) -> None:
        """The transform's state (and a step count of 0) for each parameter that has none yet."""
        fresh = [p for p in params if not self.state[p]]
        if fresh:  # a complex parameter's state is built on its real view (each part starts alike)
            for name, tensors in transform.init(as_real(fresh) if self._complex else fresh).items():
                for p, tensor in zip(fresh, tensors):
                    self.state[p][name] = torch.view_as_complex(tensor) if p.is_complex() else tensor
            for p in fresh:
                self.state[p]["step"] = 0
