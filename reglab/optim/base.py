"""Transform, chain and Optimizer: optimizers as compositions of small update rules.

A ``Transform`` is a pair of functions over the tensors of one parameter group (optax's
``GradientTransformation``, on lists of tensors so that ``torch._foreach_*`` ops keep it fast):

- ``init(params) -> state``: a dict of named lists of tensors, one tensor per parameter
  (``{"mu": [...], "nu": [...]}``);
- ``update(updates, state, ctx) -> updates``: turns incoming updates (at first, gradients)
  into outgoing ones, updating ``state`` in place. It never writes into the ``updates`` it
  was given: they may be the parameters' ``.grad`` or another transform's state. A piece
  whose update ends in a quotient or a weight decay may return it as a ``Deferred``, which
  the optimizer applies in torch.optim's passes (one ``addcdiv_``) instead of materializing it.
- ``after_step(state, ctx)`` (optional): acts on the parameters after the step, for
  operations that are not an additive update (the proximal L1 step).

``Optimizer(params, transform)`` is a ``torch.optim.Optimizer``. Each ``step()`` runs, per
parameter group, ``u = transform.update(g, ...)`` and then ``W ← W − η u`` with ``η =
group["lr"]`` (a transform whose pieces are all ``elementwise`` runs on ~1 MB chunks of the
group's tensors in turn, for cache locality), so that ``torch.optim.lr_scheduler`` schedules work unchanged. Per-parameter
state lives in ``optimizer.state[p]`` under the transforms' names (plus ``step``), so
``state_dict``/``load_state_dict`` behave as for any PyTorch optimizer.

>>> from reglab.optim import Optimizer, chain, scale_by_adam, add_decayed_weights
>>> opt = Optimizer(model.parameters(), chain(scale_by_adam(), add_decayed_weights(1e-2)), lr=1e-3)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from reglab._checks import check_bool, check_float, check_lr, check_schedule

State = dict[str, list[Tensor]]


class Context(NamedTuple):
    params: list[Tensor]  # the parameters being updated, in the order of the updates
    grads: list[Tensor]  # their gradients (never to be written into)
    steps: list[int]  # per-parameter step count t, counting this step (1 on the first)
    group: dict[str, Any]  # the parameter group: lr and any hyperparameter a scheduler may change
    scalars: Callable[[Callable[[int], float]], list] | None = None  # fast mode's per_step

    def per_step(self, fn: Callable[[int], float]) -> list:
        """``[fn(t) for each parameter]``: how a piece gets step-dependent numbers (bias
        corrections, schedules), so that the fast mode can compute them once per step."""
        if self.scalars is not None:
            return self.scalars(fn)
        return [fn(t) for t in self.steps]


class Deferred(NamedTuple):
    """An update ``u = s · num / den + λ W`` left for the optimizer to apply the way
    torch.optim does, ``W ← (1 − ηλ) W`` then ``W ← W − η s · num / den`` in one
    ``addcdiv_``: one pass over memory and one temporary fewer than evaluating ``u`` and
    then ``W ← W − η u``. ``den``, ``scale`` (``s``) and ``decay`` (``λ``) may each be absent;
    ``scale`` holds one number per tensor, ``decay`` one number or one per tensor.

    ``chain`` evaluates it before handing it to a piece that reads updates, so a piece only
    ever receives a list, unless it declares ``takes_deferred``.
    """

    num: list[Tensor]
    den: list[Tensor] | None = None
    scale: list | None = None
    decay: float | list | None = None

    def evaluate(self, params: list[Tensor]) -> list[Tensor]:
        """``u`` as a list of new tensors (or ``num`` itself when it is all there is)."""
        u = self.num
        if self.den is not None:
            u = torch._foreach_div(u, self.den)
        if self.scale is not None:
            u = torch._foreach_mul(u, self.scale)
        if isinstance(self.decay, list):
            u = add(u, torch._foreach_mul(params, self.decay), 1.0)
        elif self.decay is not None:
            u = add(u, params, self.decay)
        return u

    def apply(self, params: list[Tensor], lr: float) -> None:
        """``W ← W − η u`` in place."""
        if isinstance(self.decay, list):
            torch._foreach_mul_(params, [1 - lr * d for d in self.decay])
        elif self.decay is not None:
            torch._foreach_mul_(params, 1 - lr * self.decay)
        if self.den is None:
            num = self.num if self.scale is None else torch._foreach_mul(self.num, self.scale)
            torch._foreach_add_(params, num, alpha=-lr)
        elif self.scale is None:
            torch._foreach_addcdiv_(params, self.num, self.den, value=-lr)
        else:
            torch._foreach_addcdiv_(params, self.num, self.den, [-lr * s for s in self.scale])


Updates = list[Tensor] | Deferred


class Transform(NamedTuple):
    init: Callable[[list[Tensor]], State]
    update: Callable[[list[Tensor], State, Context], Updates]
    after_step: Callable[[State, Context], None] | None = None
    takes_deferred: bool = False  # update accepts a Deferred (and passes it on or extends it)
    elementwise: bool = False  # each tensor's update depends on that tensor alone (not a global norm)


def apply_updates(params: list[Tensor], updates: Updates, lr: float) -> None:
    """``W ← W − η u``, in place."""
    if isinstance(updates, Deferred):
        updates.apply(params, lr)
    else:
        torch._foreach_add_(params, updates, alpha=-lr)


def keep(updates: Updates, state: State, ctx: Context) -> Updates:
    """The update of pieces that leave updates as they are."""
    return updates


def identity() -> Transform:
    """``u = g``: leaves updates unchanged (plain gradient descent with the optimizer's η)."""
    return Transform(lambda params: {}, keep, takes_deferred=True, elementwise=True)


def chain(*transforms: Transform) -> Transform:
    """Apply ``transforms`` one after the other; their state names must not collide."""
    for i, t in enumerate(transforms):
        if not isinstance(t, Transform):
            raise TypeError(f"chain: argument {i} must be a Transform (a piece such as scale_by_adam()), got {t!r} ({type(t).__name__})")

    def init(params: list[Tensor]) -> State:
        state: State = {}
        for t in transforms:
            part = t.init(params)
            clash = set(part) & set(state)
            if clash:
                raise ValueError(f"chain: two transforms keep state named {', '.join(sorted(clash))}")
            state.update(part)
        return state

    def update(updates: list[Tensor], state: State, ctx: Context) -> Updates:
        for t in transforms:
            if isinstance(updates, Deferred) and not t.takes_deferred:
                updates = updates.evaluate(ctx.params)
            updates = t.update(updates, state, ctx)
        return updates

    def after_step(state: State, ctx: Context) -> None:
        for t in transforms:
            if t.after_step is not None:
                t.after_step(state, ctx)

    has_after = any(t.after_step is not None for t in transforms)
    elementwise = all(t.elementwise for t in transforms)
    return Transform(init, update, after_step if has_after else None, takes_deferred=True, elementwise=elementwise)


def zeros_like(params: list[Tensor]) -> list[Tensor]:
    return [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]


def add(updates: list[Tensor], others: list[Tensor], alpha: float) -> list[Tensor]:
    """``updates + alpha * others`` as new tensors (the inputs may be gradients or state)."""
    return torch._foreach_add(updates, others, alpha=alpha)


def scale(factor: float) -> Transform:
    """``u ← factor · u``."""
    check_float("factor", factor)

    def update(updates, state, ctx):
        return torch._foreach_mul(updates, factor)

    return Transform(lambda params: {}, update, elementwise=True)


def scale_by_schedule(schedule: Callable[[int], float]) -> Transform:
    """``u ← s(t) · u`` with ``s`` a function of the step ``t`` (1, 2, ...): a step-size
    schedule inside a chain, for use with ``lr=1``."""
    check_schedule(schedule)

    def update(updates, state, ctx):
        return torch._foreach_mul(updates, ctx.per_step(schedule))

    return Transform(lambda params: {}, update, elementwise=True)


def as_real(tensors: list[Tensor]) -> list[Tensor]:
    """Complex tensors as real views with a trailing dimension of 2 (``torch.view_as_real``):
    as in torch.optim, a complex parameter is stepped as the pair of its real and imaginary
    parts (Adam's second moment holds ``Re(g)²`` and ``Im(g)²``, not the complex ``g²``;
    Adagrad's sum starts at ``v + v i``), while its state is kept complex, as torch.optim keeps it."""
    return [torch.view_as_real(t) if t.is_complex() else t for t in tensors]


def hyper_key(group: dict[str, Any]) -> tuple:
    """The group's hyperparameters other than ``params`` and ``lr``, as a hashable key: what a
    transform is built from. A value that cannot be hashed (a list), or a tensor (hashed by
    identity, so an in-place change would go unseen), enters by its ``repr``."""
    key = tuple([item for item in group.items() if item[0] != "params" and item[0] != "lr"])
    if any(isinstance(v, Tensor) for _, v in key) or not _hashable(key):
        key = tuple((k, repr(v) if isinstance(v, Tensor) or not _hashable(v) else v) for k, v in key)
    return key


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


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
    flat buffers but runs the update uncompiled.
    """

    sparse_grads = False  # takes sparse gradients (torch.optim's SGD and Adagrad do)
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
            raise TypeError(f"transform must be a Transform or a function group -> Transform, got {transform!r} ({type(transform).__name__})")
        if inspect.isfunction(transform) and transform.__module__.startswith("reglab.optim"):  # a piece's builder, uncalled
            raise TypeError(f"transform: {transform.__name__} builds a piece; pass the piece, {transform.__name__}(...)")
        self._transform = transform
        self.fused = bool(fused)
        self.compile = compile
        self._flat: dict[int, FlatGroup] = {}  # fast mode: param-group index -> flat buffers
        self._transforms: dict[tuple, Transform] = {}  # hyper_key(group) -> transform built for it
        self._complex = False  # some parameter is complex: steps run on real views (see as_real)
        super().__init__(params, {"lr": lr, "fused": fused, **defaults})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
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
                raise TypeError(f"transform: the function group -> Transform returned {type(built).__name__}, not a Transform")

    def transform_for(self, group: dict[str, Any]) -> Transform:
        """The group's transform, built once per distinct set of hyperparameters: rebuilt at
        every step, it cost SGD up to ~0.07 ms a step on 1M parameters (its code runs with CPU
        caches just flushed by the previous step's large tensors)."""
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
        for index, group in enumerate(self.param_groups):
            if self.fused:
                self._fast_step(index, group)
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

    def _fast_step(self, index: int, group: dict[str, Any]) -> None:
        params = group["params"]
        if not params:
            return
        flat = self._flat.get(index)
        if flat is None:
            flat = self._flat[index] = FlatGroup(params, self.densify)
        flat.gather_grads()
        flat.step(self.transform_for, group, self.state, self.compile)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim's; in fast mode gradients stay views of the flat buffer, zeroed."""
        for index, group in enumerate(self.param_groups):
            flat = self._flat.get(index)
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
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients, as in torch.optim (SGD and Adagrad do)")
        return [g.to_dense() if g.is_sparse else g for g in grads]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch.optim's, and it also takes the ``state_dict`` of the torch.optim optimizer
        this one replaces: its state and options are renamed, and options torch.optim does not
        have keep this optimizer's values, so a run started with torch.optim continues here."""
        converted = self._from_torch(state_dict)
        self._check_loaded(state_dict, converted)
        super().load_state_dict(converted)
        for flat in self._flat.values():
            flat.dirty = True

    def _check_loaded(self, saved: dict[str, Any], converted: dict[str, Any]) -> None:
        """Before anything is replaced: each parameter's saved state has the names this
        optimizer keeps (under the loaded options) and its parameter's shape. Loaded without
        this, Adam's state in an SGD failed at the next step (KeyError 'momentum'), and another
        model's state where the parameter counts happened to match failed in the update."""
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
                    names = ", ".join(sorted(saved["state"][index])) if index in saved["state"] else ", ".join(sorted(state))
                    raise ValueError(
                        f"load_state_dict: parameter {index}'s saved state holds {names}, but this {type(self).__name__} "
                        f"keeps {', '.join(sorted(keeps))} with these options: the state_dict is another optimizer's (or one with other options, e.g. amsgrad)"
                    )
                for name, value in state.items():
                    if isinstance(value, Tensor) and value.ndim and value.shape != p.shape:
                        raise ValueError(
                            f"load_state_dict: parameter {index}'s saved {name!r} has shape {tuple(value.shape)}, the parameter "
                            f"{tuple(p.shape)}: the state_dict belongs to another model (or the parameters are in another order)"
                        )

    def _from_torch(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        if len(state_dict["param_groups"]) != len(self.param_groups):
            return state_dict  # torch.optim's own check says what is wrong
        states, names = {}, self.torch_state_names
        for index, saved in state_dict["state"].items():
            state = {  # SGD's momentum_buffer may be None, or sparse (after sparse gradients)
                names.get(k, k): v.to_dense() if isinstance(v, Tensor) and v.is_sparse else v for k, v in saved.items() if v is not None
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
        fresh = [p for p in params if not self.state[p]]
        if fresh:  # a complex parameter's state is built on its real view (each part starts alike)
            for name, tensors in transform.init(as_real(fresh) if self._complex else fresh).items():
                for p, tensor in zip(fresh, tensors):
                    self.state[p][name] = torch.view_as_complex(tensor) if p.is_complex() else tensor
            for p in fresh:
                self.state[p]["step"] = 0
        for p in params:
            self.state[p]["step"] = int(self.state[p]["step"]) + 1  # int: a fast-mode state holds a tensor
        names = self.state[params[0]].keys()
        return {name: [self.state[p][name] for p in params] for name in names}


from reglab.optim.flat import FlatGroup  # noqa: E402  (flat.py builds on Context and Transform)
