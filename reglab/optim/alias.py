"""Named optimizers: drop-in replacements for ``torch.optim``, built as chains of pieces.

Each takes torch.optim's positional arguments and defaults, so replacing ``torch.optim.X`` by
``reglab.optim.X`` changes nothing (``foreach`` is accepted and ignored: the readable
implementation always runs on lists of tensors; ``fused`` selects the fast mode below). Extra
keyword options, off by default, are the same for all of them (``reglab.optim.named``):

- ``decoupled=True``: decoupled weight decay ``W ← W − η (u + λ W)`` instead of coupled L2
  ``g ← g + λ W`` (SGDW, Adagrad-W, ... ; AdamW is Adam with ``decoupled=True``);
- ``weight_decay_schedule``: a function of the step ``t`` multiplying ``weight_decay``;
- ``l1=α``: L1 subgradient ``g ← g + α sign(W)``; ``l1_proximal=α``: proximal L1 step
  ``W ← sign(W) max(|W| − ηα, 0)`` after each update (exact zeros);
- ``clip_norm=c`` / ``clip_value=c``: gradient clipping by global norm (the norm over all of
  the optimizer's groups, as ``torch.nn.utils.clip_grad_norm_`` over ``model.parameters()``) /
  by value, first;
- ``eps_in_sqrt=True`` (Adagrad, RMSprop, Adam, AdamW): the course's ``√(G + ε)`` instead
  of PyTorch's ``√G + ε``.

The chain, in order: negate (maximize), clip, coupled L2, L1 subgradient, the optimizer's own
scaling, decoupled decay; then ``W ← W − η u``; then the proximal L1 step.

``fused=True`` (every optimizer, also those torch.optim has no fused version of) selects the
fast mode: flat buffers and one compiled update (reglab/optim/flat.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from reglab._checks import check_float
from reglab.errors import ReglabError, ReglabTypeError
from reglab.optim.adaptive import scale_by_adadelta, scale_by_adagrad, scale_by_adam, scale_by_rms
from reglab.optim.base import scale_by_schedule
from reglab.optim.kernels import adam_kernel, sgd_kernel
from reglab.optim.momentum import trace, trace_from_zero
from reglab.optim.named import _Named, negate
from reglab.registry import Registry


class SGD(_Named):
    """Stochastic gradient descent, with momentum and Nesterov momentum:

        g ← g + λ W                       (weight_decay λ; coupled L2)
        a ← β a + (1 − d) g               (momentum β, dampening d; a ← g on the first step)
        u = a,  or  u = g + β a           (nesterov)
        W ← W − η u

    Same signature, defaults and trajectory as ``torch.optim.SGD``, for β in [0, 1) and d in
    [0, 1] (torch.optim also takes values outside, which diverge or flip the step). Plain SGD is
    ``W ← W − η g``; batch, stochastic or mini-batch GD depends only on the batch size.

    >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)  # doctest: +SKIP
    """

    # torch.optim.SGD takes any β >= 0 and any d; β >= 1 never forgets a gradient (the buffer
    # grows without bound) and d outside [0, 1] flips or amplifies it: refused here
    _ranges = {"momentum": (0.0, 1.0, True), "dampening": (0.0, 1.0, False)}
    torch_state_names = {"momentum_buffer": "momentum"}
    sparse_grads = True

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled: bool = False,
        weight_decay_schedule: Callable[[int], float] | None = None,
        l1: float = 0.0,
        l1_proximal: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(
            params, lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
            maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused, decoupled=decoupled,
            weight_decay_schedule=weight_decay_schedule, l1=l1, l1_proximal=l1_proximal, clip_norm=clip_norm,
            clip_value=clip_value,
        )  # fmt: skip

    @classmethod
    def check_hyperparameters(cls, group: dict[str, Any]) -> None:
        super().check_hyperparameters(group)
        momentum, dampening = group["momentum"], group["dampening"]
        if group["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ReglabError(
                f"nesterov needs momentum > 0 and dampening = 0, got momentum={momentum}, dampening={dampening}"
            )

    def kernel_for(self, group):
        return sgd_kernel(group)

    def _scaling(self, group):
        if group["momentum"] == 0:
            return []
        return [trace(group["momentum"], group["dampening"], group["nesterov"])]


class Adagrad(_Named):
    """Adagrad (Duchi et al. 2011):

        G ← G + g² ;  u = g / (√G + ε)      (PyTorch; eps_in_sqrt=True: g / √(G + ε), the course)
        W ← W − η_t u,   η_t = η / (1 + (t − 1) · lr_decay)

    Same signature and defaults as ``torch.optim.Adagrad``.
    """

    _ranges = {
        "lr_decay": (0.0, None, False),
        "initial_accumulator_value": (0.0, None, False),
        "eps": (0.0, None, False),
    }
    torch_state_names = {"sum": "sum_sq"}
    sparse_grads = True

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        eps_in_sqrt: bool = False,
        decoupled: bool = False,
        weight_decay_schedule: Callable[[int], float] | None = None,
        l1: float = 0.0,
        l1_proximal: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(
            params, lr, lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps, eps_in_sqrt=eps_in_sqrt, maximize=maximize,
            foreach=foreach, differentiable=differentiable,
            fused=fused, decoupled=decoupled, weight_decay_schedule=weight_decay_schedule, l1=l1,
            l1_proximal=l1_proximal, clip_norm=clip_norm, clip_value=clip_value,
        )  # fmt: skip

    def _scaling(self, group):
        pieces = [scale_by_adagrad(group["eps"], group["initial_accumulator_value"], group["eps_in_sqrt"])]
        if group["lr_decay"]:
            decay = group["lr_decay"]
            pieces.append(scale_by_schedule(lambda t: 1 / (1 + (t - 1) * decay)))
        return pieces


class Adadelta(_Named):
    """Adadelta (Zeiler 2012), which needs no learning rate (η = 1 by default):

        E[g²] ← ρ E[g²] + (1 − ρ) g²
        Δ = −√(E[Δ²] + ε) / √(E[g²] + ε) · g ;  E[Δ²] ← ρ E[Δ²] + (1 − ρ) Δ²
        W ← W + η Δ

    Same signature and defaults as ``torch.optim.Adadelta``. It takes no ``eps_in_sqrt``: its ε
    is already inside both roots, as in Zeiler's paper and torch.optim.
    """

    _ranges = {"rho": (0.0, 1.0, True), "eps": (0.0, None, False)}
    torch_state_names = {"square_avg": "E_g2", "acc_delta": "E_dx2"}

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled: bool = False,
        weight_decay_schedule: Callable[[int], float] | None = None,
        l1: float = 0.0,
        l1_proximal: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(
            params, lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, foreach=foreach, fused=fused,
            capturable=capturable, differentiable=differentiable, decoupled=decoupled,
            weight_decay_schedule=weight_decay_schedule, l1=l1, l1_proximal=l1_proximal, clip_norm=clip_norm,
            clip_value=clip_value,
        )  # fmt: skip

    def _scaling(self, group):
        return [scale_by_adadelta(group["rho"], group["eps"])]


class RMSprop(_Named):
    """RMSprop (Hinton 2012):

        G ← γ G + (1 − γ) g² ;  u = g / (√G + ε)   (γ = alpha; eps_in_sqrt: g / √(G + ε))
        centered: ḡ ← γ ḡ + (1 − γ) g ;  u = g / (√(G − ḡ²) + ε)
        momentum β: b ← β b + u ;  u = b
        W ← W − η u

    Same signature and defaults as ``torch.optim.RMSprop`` (γ = 0.99, η = 1e-2); γ and β must
    be in [0, 1) (torch.optim takes γ = 1 and any β >= 0).
    """

    _ranges = {"alpha": (0.0, 1.0, True), "eps": (0.0, None, False), "momentum": (0.0, 1.0, True)}
    torch_state_names = {"square_avg": "nu", "grad_avg": "mu", "momentum_buffer": "momentum"}

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        fused: bool | None = None,
        eps_in_sqrt: bool = False,
        decoupled: bool = False,
        weight_decay_schedule: Callable[[int], float] | None = None,
        l1: float = 0.0,
        l1_proximal: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(
            params, lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
            eps_in_sqrt=eps_in_sqrt, capturable=capturable, foreach=foreach, fused=fused, maximize=maximize,
            differentiable=differentiable, decoupled=decoupled, weight_decay_schedule=weight_decay_schedule, l1=l1,
            l1_proximal=l1_proximal, clip_norm=clip_norm, clip_value=clip_value,
        )  # fmt: skip

    def _scaling(self, group):
        pieces = [scale_by_rms(group["alpha"], group["eps"], group["centered"], group["eps_in_sqrt"])]
        if group["momentum"] > 0:
            pieces.append(trace_from_zero(group["momentum"]))
        return pieces


class Adam(_Named):
    """Adam (Kingma & Ba 2014, arXiv:1412.6980):

        m ← β₁ m + (1 − β₁) g ;  v ← β₂ v + (1 − β₂) g²
        m̂ = m / (1 − β₁ᵗ) ;  v̂ = v / (1 − β₂ᵗ)
        W ← W − η m̂ / (√v̂ + ε)                                   (PyTorch)
        W ← W − η √(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / √(v + ε)            (course; eps_in_sqrt=True)
        W ← W − η m / (√v + ε)                                    (bias_correction=False)

    ``(β₁, β₂) = betas``. ``weight_decay`` is coupled L2 (``g ← g + λW``) unless
    ``decoupled=True`` (AdamW). ``amsgrad`` divides by the running maximum of ``v̂``. Same
    signature, defaults and trajectory as ``torch.optim.Adam``.

    >>> opt = Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))  # doctest: +SKIP
    """

    _ranges = {"eps": (0.0, None, False)}
    torch_state_names = {"exp_avg": "mu", "exp_avg_sq": "nu", "max_exp_avg_sq": "nu_max"}
    torch_group_names = {"decoupled_weight_decay": "decoupled"}
    _default_weight_decay = 0.0
    _default_decoupled = False

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | None = None,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool | None = None,
        decoupled: bool | None = None,
        eps_in_sqrt: bool = False,
        bias_correction: bool = True,
        weight_decay_schedule: Callable[[int], float] | None = None,
        l1: float = 0.0,
        l1_proximal: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        r = self.resolve({"betas": betas, "weight_decay": weight_decay, "decoupled": decoupled,
                          "decoupled_weight_decay": decoupled_weight_decay})  # fmt: skip
        super().__init__(
            params, lr, betas=r["betas"], eps=eps, weight_decay=r["weight_decay"], amsgrad=amsgrad,
            eps_in_sqrt=eps_in_sqrt, bias_correction=bias_correction, maximize=maximize, foreach=foreach,
            capturable=capturable, differentiable=differentiable, fused=fused, decoupled=r["decoupled"],
            weight_decay_schedule=weight_decay_schedule, l1=l1, l1_proximal=l1_proximal, clip_norm=clip_norm,
            clip_value=clip_value,
        )  # fmt: skip

    @classmethod
    def resolve(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``decoupled`` (or torch's ``decoupled_weight_decay``) and ``weight_decay`` take the
        class's defaults (AdamW: decoupled, 1e-2); ``betas`` given as a list becomes a tuple."""
        out = super().resolve(kwargs)
        alias = out.pop("decoupled_weight_decay", None)
        if out.get("decoupled") is None:
            out["decoupled"] = cls._default_decoupled if alias is None else alias
        if out.get("weight_decay") is None:
            out["weight_decay"] = cls._default_weight_decay
        if isinstance(out.get("betas"), list):
            out["betas"] = tuple(out["betas"])
        return out

    @classmethod
    def check_hyperparameters(cls, group: dict[str, Any]) -> None:
        super().check_hyperparameters(group)
        betas = group["betas"]
        if not isinstance(betas, tuple) or len(betas) != 2:
            raise ReglabTypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            check_float(f"betas[{i}]", b, low=0, high=1, high_open=True)

    def kernel_for(self, group):
        return adam_kernel(group)

    def _scaling(self, group):
        b1, b2 = group["betas"]
        return [scale_by_adam(b1, b2, group["eps"], group["amsgrad"], group["eps_in_sqrt"], group["bias_correction"])]


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, arXiv:1711.05101): Adam with decoupled weight decay,

        W ← W − η (m̂ / (√v̂ + ε) + λ W)

    the decay applied to the weights, not added to the gradient. Same signature, defaults
    (``weight_decay=1e-2``) and trajectory as ``torch.optim.AdamW``.
    """

    _default_weight_decay = 1e-2
    _default_decoupled = True


OPTIMIZERS: Registry[type[_Named]] = Registry(
    "optimizer",
    {"sgd": SGD, "adagrad": Adagrad, "adadelta": Adadelta, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW},
)

__all__ = ["SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "OPTIMIZERS", "negate"]
