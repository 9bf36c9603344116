"""Time one optimizer.step() of reglab.optim against torch.optim, in one process.

Shapes: ~1M and ~10M float32 parameters, as a few large tensors and as many small ones.
For each named optimizer, torch.optim runs as for-loop, foreach and (where PyTorch has it on
the device) fused. Printed per case:

- eager/nonfused: our readable (eager) mode against the faster of torch's for-loop and
  foreach (goal <= 1.1);
- fast/best: our fast mode (fused=True: flat buffers, compiled) against torch's fastest,
  fused included (goal <= 1.0);
- floor%: the memory-bandwidth floor (bytes per parameter per step x parameters / measured
  copy bandwidth) as a percentage of our fast mode's step time (goal >= 70% at 10M).

On glibc, the allocator's thresholds are pinned first (``steady_allocator``): left dynamic, they
make a step's temporaries (torch's and ours alike) come either from the heap or from fresh,
page-faulting memory depending on what ran before, a 2-3x swing between runs.

    python benchmarks/optim_step.py [--device cpu|cuda] [--reps 20] [--sizes 1M,10M]
                                    [--layouts few-large,many-small] [--optimizers Adam,AdamW]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time

import torch

import reglab.optim as ro

# bytes read + written per float32 parameter by one step (p, g and the state tensors)
BYTES = {"SGD": 20, "Adagrad": 20, "Adadelta": 28, "RMSprop": 20, "Adam": 28, "AdamW": 28}
OPTIONS = {"SGD": {"lr": 0.01, "momentum": 0.9}, "Adagrad": {}, "Adadelta": {}, "RMSprop": {}, "Adam": {}, "AdamW": {}}
FUSED = {"SGD", "Adagrad", "Adam", "AdamW"}  # torch.optim classes with a fused implementation


def shapes(total: int, layout: str) -> list[tuple[int, ...]]:
    if layout == "few-large":
        return [(total // 4 // 1000, 1000)] * 4
    return [(1000,)] * (total // 1000)  # many small: one tensor per 1,000 parameters


def clones(params):
    """Copies with gradients, one set per implementation (the fast mode also re-binds its
    parameters into one flat buffer)."""
    out = [p.detach().clone().requires_grad_() for p in params]
    for c, p in zip(out, params):
        c.grad = p.grad.clone()
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(optimizers: dict, device, reps, block: int = 5) -> dict[str, float]:
    """Median time of one ``step()`` per optimizer. The optimizers take turns in blocks of
    ``block`` timed steps, each block after one untimed step that brings its tensors back into
    cache and memory: a slow spell of the (shared) machine hits every implementation alike,
    and no implementation is timed on memory another one has just evicted."""
    for opt in optimizers.values():
        for _ in range(3):
            opt.step()
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(max(1, reps // block)):
        for name, opt in optimizers.items():
            opt.step()
            for _ in range(block):
                sync(device)
                start = time.perf_counter()
                opt.step()
                sync(device)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def steady_allocator() -> None:
    """glibc: serve allocations below 32 MiB from the heap and keep freed memory (up to
    256 MiB) for reuse, as a long-running training process ends up doing anyway."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to pin
        return
    libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 256 * 2**20)  # M_TRIM_THRESHOLD


def copy_bandwidth(device, n=50_000_000) -> float:
    """Bytes per second of a large tensor copy (read + write)."""
    src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
    for _ in range(3):
        dst.copy_(src)
    sync(device)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - start)
    return 8 * n / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--sizes", default="1M,10M")
    parser.add_argument("--optimizers", default=",".join(BYTES))
    parser.add_argument("--layouts", default="few-large,many-small")
    args = parser.parse_args()
    steady_allocator()
    device = torch.device(args.device)
    bandwidth = copy_bandwidth(device)
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} copy "
        f"bandwidth={bandwidth / 1e9:.1f} GB/s"
    )
    print(
        f"{'case':32} {'eager':>8} {'fast':>8} {'loop':>8} {'foreach':>8} {'fused':>8} {'eager/nonfused':>15} "
        f"{'fast/best':>10} {'floor%':>7}"
    )
    for size in args.sizes.split(","):
        total = int(float(size.rstrip("M")) * 1_000_000)
        for layout in args.layouts.split(","):
            params = [torch.randn(s, device=device, requires_grad=True) for s in shapes(total, layout)]
            for p in params:
                p.grad = torch.randn_like(p) * 1e-3
            n = sum(p.numel() for p in params)
            for name in args.optimizers.split(","):
                kw = OPTIONS[name]
                # each implementation steps its own copy of the parameters and gradients: shared
                # ones would stay in a large cache for those that share them (L3 can hold them)
                makers = {
                    "ours": lambda: getattr(ro, name)(clones(params), **kw),
                    "fast": lambda: getattr(ro, name)(clones(params), **kw, fused=True),
                }
                for impl, flag in (
                    ("loop", {"foreach": False}),
                    ("foreach", {"foreach": True}),
                    ("fused", {"fused": True}),
                ):
                    if impl != "fused" or name in FUSED:
                        makers[impl] = lambda flag=flag: getattr(torch.optim, name)(clones(params), **kw, **flag)
                optimizers = {}
                for impl, make in makers.items():
                    try:
                        optimizers[impl] = make()
                        optimizers[impl].step()
                    except (RuntimeError, ValueError):  # no fused kernel for this device
                        pass
                t = time_steps(optimizers, device, args.reps)
                fast = t.pop("fast")
                nonfused = min(t["loop"], t["foreach"])
                best = min(v for k, v in t.items() if k != "ours")
                floor = BYTES[name] * n / bandwidth
                fused = f"{1000 * t['fused']:8.2f}" if "fused" in t else f"{'-':>8}"
                print(
                    f"{name + ' ' + size + ' ' + layout:32} {1000 * t['ours']:8.2f} {1000 * fast:8.2f} "
                    f"{1000 * t['loop']:8.2f} "
                    f"{1000 * t['foreach']:8.2f} {fused} {t['ours'] / nonfused:15.2f} {fast / best:10.2f} "
                    f"{100 * floor / fast:6.0f}%",
                    flush=True,
                )


if __name__ == "__main__":
    main()
