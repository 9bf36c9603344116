"""A Linear layer's products on CPU, by ATen (MKL) or by oneDNN.

    y = x Wᵀ + b,    ∂L/∂x = (∂L/∂y) W,    ∂L/∂W = (∂L/∂y)ᵀ x,    ∂L/∂b = Σ_rows ∂L/∂y

PyTorch multiplies float32 matrices on x86 CPUs with MKL, which runs its AVX2 kernels on AMD
processors. oneDNN, which PyTorch ships too, picks its kernels by the instruction set, not the
vendor: on a Zen 5 core, which executes AVX-512 at full width, it multiplies a batch of 100
through a 256 → 256 layer (forward and both backward products) in 0.6× MKL's time; a baseline
step of the default study (MLP 40→256→256→10) takes 0.91-0.99× as long, three copies stacked
0.84-0.90×, the default study 0.87× (BENCHMARKS.md). It costs ~20 µs more a call, so it takes
only products of at least ``MIN_WORK`` = B·in·out.

``kernel`` is ``"aten"`` (``F.linear``), ``"onednn"`` (oneDNN for float32 CPU products of at
least ``MIN_WORK``, ``F.linear`` for the rest: another dtype, a device, autocast, tracing by
``torch.compile``), or ``"auto"``: oneDNN on an AMD CPU of family 26 or later (Zen 5) with
AVX-512, ATen elsewhere (Intel's cores get AVX-512 kernels from MKL; on a Zen 4, which executes
AVX-512 256 bits at a time, oneDNN made a baseline step 1.28× slower). The two kernels round
differently (both float32 products, to ~1e-7 of their scale): the kernel is part of reproducing
a run, as its thread count is, and runs record it. The products are differentiable twice (a graph of their
backward is made of ATen's products), for Hessian-vector products.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reglab.errors import ReglabError

KERNELS = ("auto", "aten", "onednn")
MIN_WORK = 1 << 21  # B·in·out: a batch of 100 through 128 → 256 (3.3e6) gains, 128 → 128 (1.6e6) does not


def onednn_available() -> bool:
    """Whether this PyTorch build has oneDNN's float32 linear product (``mkldnn._linear_pointwise``)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _cpu_id(cpuinfo: str) -> tuple[str, int]:
    """(vendor, family) from the text of /proc/cpuinfo; ("", 0) where it does not say."""
    vendor, family = "", 0
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "vendor_id" and not vendor:
            vendor = value
        elif key == "cpu family" and not family and value.isdigit():
            family = int(value)
    return vendor, family


def auto_kernel(cpuinfo: str | None = None, capability: str | None = None) -> str:
    """The kernel ``"auto"`` stands for on this machine (or on the one whose /proc/cpuinfo text
    and ``torch.backends.cpu.get_cpu_capability()`` are given)."""
    if cpuinfo is None:
        return _this_machine()
    capability = capability if capability is not None else torch.backends.cpu.get_cpu_capability()
    vendor, family = _cpu_id(cpuinfo)
    fast = vendor == "AuthenticAMD" and family >= 26 and capability == "AVX512"
    return "onednn" if fast and onednn_available() else "aten"


@functools.cache
def _this_machine() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: MKL's dispatch there is not known to us
        return "aten"
    return auto_kernel(text)


def resolve(kernel: str, device: torch.device | str = "cpu") -> str:
    """``kernel`` checked and ``"auto"`` resolved for ``device``: ``"aten"`` or ``"onednn"`` (a
    CPU kernel: ``"auto"`` is ``"aten"`` on another device, where ATen calls the device's own)."""
    if kernel not in KERNELS:
        raise ReglabError(f"matmul must be one of {', '.join(KERNELS)}; got {kernel!r}")
    on_cpu = torch.device(device).type == "cpu"
    if kernel == "auto":
        return auto_kernel() if on_cpu else "aten"
    if kernel == "onednn" and not on_cpu:
        raise ReglabError(f"matmul = 'onednn' multiplies on CPU; this run's device is {str(device)!r} (auto, aten)")
    if kernel == "onednn" and not onednn_available():
        raise ReglabError("matmul = 'onednn' needs a PyTorch build with oneDNN (torch.backends.mkldnn)")
    return kernel


def _lp(a: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ weightᵀ (+ bias)`` by oneDNN (its linear product, as inductor calls it)."""
    return torch.ops.mkldnn._linear_pointwise(a, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """``x Wᵀ + b`` for 2-d ``x`` (B, in), ``W`` (out, in), ``b`` (out,) or None. Its backward is
    as lean as Python allows (a fuller one, with nested products, cost more than oneDNN saved:
    BENCHMARKS.md); asked for a graph of itself (``create_graph``), it computes the same
    gradients with ATen's differentiable products instead."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        return _lp(x, weight, bias)

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gb = gy.sum(0) if need_b else None
        if torch.is_grad_enabled():  # a second derivative will be taken
            return gy @ weight if need_x else None, gy.t() @ x if need_w else None, gb
        gy = gy.contiguous()  # the gradient of a sum arrives expanded (stride 0)
        gx = _lp(gy, weight.t()) if need_x else None  # (B, out) @ (out, in)
        gw = _lp(gy.t(), x.t()) if need_w else None  # (out, B) @ (B, in): W's own layout
        return gx, gw, gb


class _OneDNNStacked(torch.autograd.Function):
    """``x_s @ w_s + b_s`` for each copy s: x (S, B, K), w (S, K, N) contiguous, b (S, 1, N);
    one product per copy, as the copy's own ``Linear`` makes it, in one autograd node."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return torch.stack([_lp(xs, ws.t(), bs[0]) for xs, ws, bs in zip(x.unbind(), w.unbind(), b.unbind())])

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gb = gy.sum(1, keepdim=True) if need_b else None
        if torch.is_grad_enabled():
            return gy @ w.transpose(1, 2) if need_x else None, x.transpose(1, 2) @ gy if need_w else None, gb
        gys = gy.contiguous().unbind()
        gx = torch.stack([_lp(g, ws) for g, ws in zip(gys, w.unbind())]) if need_x else None
        gw = torch.stack([_lp(xs.t(), g.t()) for xs, g in zip(x.unbind(), gys)]) if need_w else None
        return gx, gw, gb


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x Wᵀ + b`` by oneDNN, differentiable: x (B, in), W (out, in), b (out,) or None."""
    return _OneDNNLinear.apply(x, weight, bias)


def stacked_product(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """``x_s @ w_s + b_s`` for each copy by oneDNN, differentiable: x (S, B, K), w (S, K, N), b (S, 1, N)."""
    return _OneDNNStacked.apply(x, w, b)


def onednn_fits(x: Tensor, w: Tensor, b: Tensor | None) -> bool:
    """Whether oneDNN takes this product: float32 CPU tensors, a 2-d input, at least
    ``MIN_WORK``, no autocast, not traced by ``torch.compile``."""
    return (
        x.dim() == 2
        and x.dtype == w.dtype == torch.float32
        and (b is None or b.dtype == torch.float32)
        and x.device.type == "cpu"
        and w.device.type == "cpu"
        and x.shape[0] * w.shape[0] * w.shape[1] >= MIN_WORK
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, kernel: str = "aten") -> Tensor:
    """``F.linear(x, weight, bias)`` (weight (out, in)) by ``kernel`` (``"aten"`` or ``"onednn"``, resolved)."""
    if kernel == "onednn" and onednn_fits(x, weight, bias):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


@functools.cache
def register_flops() -> None:
    """Teaches ``torch.utils.flop_counter`` oneDNN's product (2·M·K·N), once, so that FLOP counts
    (``reglab.train.threads``) are the same whichever kernel multiplies."""
    from torch.utils.flop_counter import register_flop_formula

    if onednn_available():
        register_flop_formula(torch.ops.mkldnn._linear_pointwise)(_onednn_flops)


def _onednn_flops(x_shape, w_shape, *args, **kwargs) -> int:
    # x (M, K), weight (N, K)
    return 2 * x_shape[0] * x_shape[1] * w_shape[0]


class Linear(nn.Linear):
    """``nn.Linear`` whose product is made by ``matmul_kernel`` (``"aten"``, its default: exactly
    ``nn.Linear``; ``"onednn"``; see the module). ``set_kernel`` sets it for a model's layers."""

    matmul_kernel = "aten"

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias, self.matmul_kernel)


def set_kernel(model: nn.Module, kernel: str, device: torch.device | str = "cpu") -> str:
    """Sets ``kernel`` (checked, ``"auto"`` resolved for ``device``) as the ``matmul_kernel`` of
    every layer of ``model`` that has one (``Linear``, a stacked model's) and returns it resolved."""
    kernel = resolve(kernel, device)
    for m in model.modules():
        if isinstance(getattr(type(m), "matmul_kernel", None), str):
            m.matmul_kernel = kernel
    return kernel
