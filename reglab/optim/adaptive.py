"""Adaptive step sizes: Adagrad, Adadelta, RMSprop, Adam moments (TECHNIQUES.md section 3).

Each returns the update ``u`` to which the optimizer applies ``W ← W − η u``; where ``u`` is a
quotient it comes back as a ``Deferred`` (numerator, denominator, scale), which the optimizer
applies in one ``addcdiv_`` as torch.optim does. Where the course
and PyTorch place ε differently, ``eps_in_sqrt=True`` gives the course form ``g / √(G + ε)``
and the default gives PyTorch's ``g / (√G + ε)``.
"""

from __future__ import annotations

import torch

from reglab._checks import check_bool, check_float
from reglab.optim.base import Context, Deferred, State, Transform, zeros_like


def _check(eps: float, eps_in_sqrt: bool = False, **rates: float) -> None:
    """``eps > 0``, ``eps_in_sqrt`` a bool, and each decay rate (β, ρ, γ) in ``[0, 1)``."""
    check_float("eps", eps, low=0.0, low_open=True)
    check_bool("eps_in_sqrt", eps_in_sqrt)
    for name, rate in rates.items():
        check_float(name, rate, low=0.0, high=1.0, high_open=True)


def _denominator(second_moment, eps: float, eps_in_sqrt: bool):
    """``√(v + ε)`` (course) or ``√v + ε`` (PyTorch), as a new list."""
    if eps_in_sqrt:
        d = torch._foreach_add(second_moment, eps)
        torch._foreach_sqrt_(d)
    else:
        d = torch._foreach_sqrt(second_moment)
        torch._foreach_add_(d, eps)
    return d


def scale_by_adagrad(
    eps: float = 1e-10, initial_accumulator_value: float = 0.0, eps_in_sqrt: bool = False
) -> Transform:
    """Adagrad (Duchi et al. 2011): ``G ← G + g² ; u = g / (√G + ε)``, or ``g / √(G + ε)``
    with ``eps_in_sqrt`` (the course form). ``G`` starts at ``initial_accumulator_value``."""
    _check(eps, eps_in_sqrt)
    check_float("initial_accumulator_value", initial_accumulator_value, low=0.0)

    def init(params) -> State:
        return {"sum_sq": [torch.full_like(p, initial_accumulator_value) for p in params]}  # G: sum of g²

    def update(updates, state: State, ctx: Context):
        G = state["sum_sq"]
        torch._foreach_addcmul_(G, updates, updates)
        return Deferred(updates, _denominator(G, eps, eps_in_sqrt))

    return Transform(init, update, elementwise=True)


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> Transform:
    """Adadelta (Zeiler 2012, arXiv:1212.5701), with ``Δ`` the step before η (η = 1 in the paper):

    E[g²] ← ρ E[g²] + (1 − ρ) g²
    Δ     = √(E[Δ²] + ε) / √(E[g²] + ε) · g          (the optimizer applies W ← W − η Δ)
    E[Δ²] ← ρ E[Δ²] + (1 − ρ) Δ²
    """
    _check(eps, rho=rho)

    def init(params) -> State:
        return {"E_g2": zeros_like(params), "E_dx2": zeros_like(params)}  # running E[g²], E[Δ²]

    def update(updates, state: State, ctx: Context):
        Eg2, Edx2 = state["E_g2"], state["E_dx2"]
        torch._foreach_mul_(Eg2, rho)
        torch._foreach_addcmul_(Eg2, updates, updates, value=1 - rho)
        rms_g = torch._foreach_add(Eg2, eps)
        torch._foreach_sqrt_(rms_g)
        delta = torch._foreach_add(Edx2, eps)
        torch._foreach_sqrt_(delta)
        torch._foreach_div_(delta, rms_g)
        torch._foreach_mul_(delta, updates)
        torch._foreach_mul_(Edx2, rho)
        torch._foreach_addcmul_(Edx2, delta, delta, value=1 - rho)
        return delta

    return Transform(init, update, elementwise=True)


def scale_by_rms(
    alpha: float = 0.99, eps: float = 1e-8, centered: bool = False, eps_in_sqrt: bool = False
) -> Transform:
    """RMSprop (Hinton 2012): ``G ← γ G + (1 − γ) g² ; u = g / (√G + ε)`` (``γ = alpha``), or
    ``g / √(G + ε)`` with ``eps_in_sqrt``. ``centered`` divides by the estimated standard
    deviation instead: ``ḡ ← γ ḡ + (1 − γ) g ; u = g / (√(G − ḡ²) + ε)``."""
    _check(eps, eps_in_sqrt, alpha=alpha)
    check_bool("centered", centered)

    def init(params) -> State:
        state = {"nu": zeros_like(params)}  # G: running mean of g²
        if centered:
            state["mu"] = zeros_like(params)  # ḡ: running mean of g
        return state

    def update(updates, state: State, ctx: Context):
        G = state["nu"]
        torch._foreach_mul_(G, alpha)
        torch._foreach_addcmul_(G, updates, updates, value=1 - alpha)
        if centered:
            mu = state["mu"]
            torch._foreach_lerp_(mu, updates, 1 - alpha)
            variance = torch._foreach_addcmul(G, mu, mu, value=-1)
            return Deferred(updates, _denominator(variance, eps, eps_in_sqrt))
        return Deferred(updates, _denominator(G, eps, eps_in_sqrt))

    return Transform(init, update, elementwise=True)


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
    eps_in_sqrt: bool = False,
    bias_correction: bool = True,
) -> Transform:
    """Adam (Kingma & Ba 2014, arXiv:1412.6980):

        m ← β₁ m + (1 − β₁) g ;  v ← β₂ v + (1 − β₂) g²
        u = m̂ / (√v̂ + ε)   with m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ)          (PyTorch)
        u = √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m / √(v + ε)                           (course, eps_in_sqrt)

    ``amsgrad`` uses the running maximum of ``v`` in the denominator (Reddi et al. 2018).
    ``bias_correction=False`` drops m̂ and v̂: ``u = m / (√v + ε)`` (``m / √(v + ε)`` with
    ``eps_in_sqrt``), the form before Kingma & Ba's correction, whose first steps are too small
    (m starts at 0) and then too large where v lags.
    """
    _check(eps, eps_in_sqrt, b1=b1, b2=b2)
    check_bool("amsgrad", amsgrad)
    check_bool("bias_correction", bias_correction)

    def init(params) -> State:
        state = {"mu": zeros_like(params), "nu": zeros_like(params)}  # m: first moment, v: second moment
        if amsgrad:
            state["nu_max"] = zeros_like(params)  # max of v over steps
        return state

    def update(updates, state: State, ctx: Context):
        m, v = state["mu"], state["nu"]
        torch._foreach_lerp_(m, updates, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, updates, updates, value=1 - b2)
        if amsgrad:
            torch._foreach_maximum_(state["nu_max"], v)
            v = state["nu_max"]
        if not bias_correction:  # m / (√v + ε), or m / √(v + ε)
            return Deferred(m, _denominator(v, eps, eps_in_sqrt))
        if eps_in_sqrt:  # √(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / √(v + ε)
            denom = _denominator(v, eps, True)
            return Deferred(m, denom, ctx.per_step(lambda t: (1 - b2**t) ** 0.5 / (1 - b1**t)))
        # 1/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, ctx.per_step(lambda t: (1 - b2**t) ** 0.5))
        torch._foreach_add_(denom, eps)
        return Deferred(m, denom, ctx.per_step(lambda t: 1 / (1 - b1**t)))

    return Transform(init, update, elementwise=True)
