"""How close one trial's training runs to the hardware, in one process, one thread.

1. The baseline trial (MLP 40→256→256→10, batch 100, Adam) through ``Trainer.train_epoch``:
   its GFLOP/s (3 × the forward pass's FLOPs a step) against the rate at which the same CPU
   multiplies the step's own matrix shapes (the 3 forward and 5 backward products, timed bare),
   an epoch and the products' rounds interleaved; the ratio is the median of the rounds'. Both
   multiply with ATen (``training.matmul = "aten"``), so that the trial is held to its own
   products; 5. measures oneDNN's.
2. Pure overhead: the per-step time of a width-8 model (almost no arithmetic) in
   ``Trainer.train_epoch`` against a bare PyTorch loop with ``torch.optim.Adam(fused=True)``.
3. Stacking (``reglab.train.stacked``): S copies as one model against S separate models, time
   per trial-step, S = 3, 6, 9 and 12.
4. The kernel paths: a baseline step with plain SGD, momentum and Nesterov (``torch._fused_sgd_``)
   and with Adam and proximal L1 (``torch._fused_adam_``, then the proximal step) against the
   same optimizer stepped through its readable chain.

5. The Linear layers' kernel (``reglab.matmul``): a baseline step with oneDNN's products against
   ATen's (MKL), separate and 3 copies stacked; the ratio is the median of the rounds'.
   (Where this PyTorch has no oneDNN, skipped.)

6. ``--layers``: one Linear layer's three products (forward, the input's and the weight's
   gradients), MKL's against oneDNN's, µs on one thread, medians of interleaved rounds, for the
   shapes of BENCHMARKS.md's table.

7. ``--joined``: arms of the default study that differ only in their batches, their early
   stopping or their weight decay and proximal L1 (``stack_key``), two of them (6 copies)
   stacked as one model against each arm's 3 seeds stacked apart: an epoch on MNIST-1D through
   ``StackedTrainer.train_epoch``, rounds interleaved.

8. ``--profile``: where a baseline step's time goes (torch.profiler, self CPU time by kind of
   operator: matrix products, elementwise, loss, optimizer, autograd's own, the rest).

9. ``--evaluation``: a stacked model's validation pass at an epoch's end, all S copies at once
   (``StackedTrainer.evaluate``, what a stacked fit does off the CPU) against copy by copy (each
   copy's weights into its own model, then ``Trainer.evaluate``, what it does on CPU), S = 3 and
   6, rounds interleaved.

Rounds alternate between the sides; the figures are medians over rounds.

    python benchmarks/trial_speed.py [--rounds 7] [--layers | --joined | --profile | --evaluation]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from reglab.data import Data
from reglab.models import mlp
from reglab.optim import SGD, Adam
from reglab.train.loop import Trainer
from reglab.train.stacked import StackedModel
from reglab.train.threads import step_flops

N, BATCH = 3200, 100


def _data(features: int = 40, classes: int = 10) -> Data:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N + 1600, features, generator=g)
    y = torch.randint(0, classes, (N + 1600,), generator=g)
    return Data("bench", x[:N], y[:N], x[N : N + 800], y[N : N + 800], x[N + 800 :], y[N + 800 :], num_classes=classes)


def _epoch_seconds(trainer: Trainer) -> float:
    start = time.perf_counter()
    trainer.train_epoch()
    return time.perf_counter() - start


def _bare_epoch(model, opt, data: Data) -> float:
    start = time.perf_counter()
    perm = torch.randperm(N)
    for i in range(0, N, BATCH):
        idx = perm[i : i + BATCH]
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def _products(width: int = 256) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    """The baseline step's own products: forward x·W1ᵀ, h·W2ᵀ, h·W3ᵀ and, backward, the 3
    weight gradients and the 2 input gradients that a step needs; (operand pairs, FLOPs)."""
    shapes = [(BATCH, 40, width), (BATCH, width, width), (BATCH, width, 10),  # forward: (m, k, n)
              (width, BATCH, 40), (width, BATCH, width), (10, BATCH, width),  # weight gradients
              (BATCH, 10, width), (BATCH, width, width)]  # input gradients  # fmt: skip
    return [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes], sum(2 * m * k * n for m, k, n in shapes)


def _products_rate(pairs: list[tuple[torch.Tensor, torch.Tensor]], flops: int, repeats: int = N // BATCH) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        for a, b in pairs:
            torch.mm(a, b)
    return repeats * flops / (time.perf_counter() - start) / 1e9


def trial_rate(rounds: int) -> tuple[float, float, float, float]:
    """The baseline trial's GFLOP/s in ``Trainer.train_epoch`` and the bare products' GFLOP/s,
    interleaved: each round times one epoch (32 steps) and then the step's 8 products 32 times,
    so that both sides see the same spell of a shared machine. Returns (matmul GFLOP/s, trial
    GFLOP/s, seconds a step, the median of the rounds' ratios)."""
    data = _data()
    torch.manual_seed(0)
    model = mlp(40, 10, 256, 2, init="auto")
    trainer = Trainer(model, data, Adam(model.parameters(), 1e-3), epochs=1, batch_size=BATCH, matmul="aten")
    pairs, product_flops = _products()
    flops = step_flops(model, data.x_train[:BATCH]) * (N // BATCH)
    trainer.train_epoch()  # warm-up: the first epoch allocates
    _products_rate(pairs, product_flops)
    times, peaks = [], []
    for _ in range(rounds):
        times.append(_epoch_seconds(trainer))
        peaks.append(_products_rate(pairs, product_flops))
    ratios = [flops / t / 1e9 / peak for t, peak in zip(times, peaks)]
    step = statistics.median(times) / (N // BATCH)
    return statistics.median(peaks), flops / statistics.median(times) / 1e9, step, statistics.median(ratios)


def overhead(rounds: int) -> tuple[float, float]:
    data = _data()
    torch.manual_seed(0)
    ours = mlp(40, 10, 8, 2, init="auto")
    bare = mlp(40, 10, 8, 2, init="auto")
    trainer = Trainer(ours, data, Adam(ours.parameters(), 1e-3), epochs=1, batch_size=BATCH)
    opt = torch.optim.Adam(bare.parameters(), 1e-3, fused=True)
    a, b = [], []
    for _ in range(rounds):
        a.append(_epoch_seconds(trainer))
        b.append(_bare_epoch(bare, opt, data))
    steps = N // BATCH
    return statistics.median(a) / steps, statistics.median(b) / steps


def stacking(copies: int, rounds: int) -> tuple[float, float]:
    """Seconds per trial-step: S separate models stepped one after the other, and stacked."""
    x = torch.randn(copies, BATCH, 40)
    y = torch.randint(0, 10, (copies, BATCH))
    models = [mlp(40, 10, 256, 2) for _ in range(copies)]
    stacked = StackedModel(models, [torch.Generator() for _ in range(copies)])
    opts = [Adam(m.parameters(), 1e-3) for m in models]
    opt = Adam(stacked.parameters(), 1e-3)

    def apart():
        for s in range(copies):
            loss = F.cross_entropy(models[s](x[s]), y[s])
            opts[s].zero_grad(set_to_none=True)
            loss.backward()
            opts[s].step()

    def together():
        out = stacked(x)
        loss = torch.stack([F.cross_entropy(out[s], y[s]) for s in range(copies)]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    a, b = [], []
    for _ in range(rounds):
        for fn, into in ((apart, a), (together, b)):
            start = time.perf_counter()
            for _ in range(50):
                fn()
            into.append((time.perf_counter() - start) / 50 / copies)
    return statistics.median(a), statistics.median(b)


def _interleaved(rounds: int, first, second) -> tuple[float, float]:
    """Median seconds of ``first()`` and of ``second()``, called in alternation ``rounds`` times."""
    a, b = [], []
    for _ in range(rounds):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


JOINED = (
    ("baseline", "early-stopping"),
    ("baseline", "shift"),
    ("baseline", "input-noise"),
    ("label-smoothing", "mixup"),
    ("mixup", "cutmix"),
    ("l2", "weight-decay"),  # each copy's own decay around the stacked step (reglab.train.stacked_shrink)
    ("baseline", "l1-proximal"),
)


def joined(rounds: int, pairs=JOINED, seeds: int = 3) -> dict[tuple[str, ...], tuple[float, float]]:
    """Seconds of one epoch of the default study's recipe (MNIST-1D, 4,000 samples, batch 100):
    the arms' ``seeds`` seeds each stacked apart (one model an arm) and all of them as one."""
    from reglab.lab.recipe import Recipe
    from reglab.lab.stack import stacked_trainer
    from reglab.lab.study.arms import ARMS

    def stacked(arms):
        return stacked_trainer([Recipe().updated({**ARMS[arm][1], "training.seed": s}) for arm in arms
                                for s in range(seeds)])  # fmt: skip

    out = {}
    for arms in pairs:
        apart, together = [stacked([arm]) for arm in arms], stacked(arms)
        out[arms] = _interleaved(rounds, lambda: [group.train_epoch() for group in apart], together.train_epoch)
    return out


def evaluation(rounds: int, sizes=(3, 6)) -> dict[int, tuple[float, float]]:
    """Seconds of the validation pass of the default recipe's S stacked copies (MNIST-1D, 800
    validation samples each): copy by copy, and all at once."""
    from reglab.lab.recipe import Recipe
    from reglab.lab.stack import stacked_trainer

    out = {}
    for copies in sizes:
        stacked = stacked_trainer([Recipe().updated({"training.seed": s}) for s in range(copies)])
        trainers = stacked.trainers

        def one_by_one(stacked=stacked, trainers=trainers):
            for s, t in enumerate(trainers):
                stacked.model.copy_to(s)
                t.evaluate(t.data.x_valid, t.data.y_valid)

        out[copies] = _interleaved(rounds, one_by_one, stacked.evaluate)
    return out


OPTIMIZERS = {  # name -> a baseline step's optimizer that has a kernel path
    "SGD plain": lambda ps: SGD(ps, 0.05),
    "SGD momentum": lambda ps: SGD(ps, 0.05, momentum=0.9),
    "SGD Nesterov": lambda ps: SGD(ps, 0.05, momentum=0.9, nesterov=True),
    "Adam + proximal L1": lambda ps: Adam(ps, 1e-3, l1_proximal=0.1),
}


def kernel_paths(rounds: int) -> dict[str, tuple[float, float]]:
    """Seconds per baseline step for each of ``OPTIMIZERS`` on the kernel path and through the
    chain (``use_kernel = False``): name -> (kernel, chain)."""
    data = _data()
    trainers = {}
    for name, make in OPTIMIZERS.items():
        for kernel in (True, False):
            torch.manual_seed(0)
            model = mlp(40, 10, 256, 2, init="auto")
            opt = make(model.parameters())
            opt.use_kernel = kernel
            trainers[name, kernel] = Trainer(model, data, opt, epochs=1, batch_size=BATCH)
    times: dict[tuple[str, bool], list[float]] = {k: [] for k in trainers}
    for _ in range(rounds):
        for key, trainer in trainers.items():
            times[key].append(_epoch_seconds(trainer) / (N // BATCH))
    return {name: (statistics.median(times[name, True]), statistics.median(times[name, False])) for name in OPTIMIZERS}


def kernels(rounds: int, copies: int = 3) -> dict[str, float]:
    """The median over interleaved rounds of (oneDNN / ATen) time: a baseline epoch in
    ``Trainer.train_epoch``, and ``copies`` copies stacked (50 steps)."""
    from reglab import matmul

    data = _data()
    trainers = {}
    for kernel in ("aten", "onednn"):
        torch.manual_seed(0)
        model = mlp(40, 10, 256, 2, init="auto")
        trainers[kernel] = Trainer(model, data, Adam(model.parameters(), 1e-3), epochs=1, batch_size=BATCH,
                                   matmul=kernel)  # fmt: skip
    x = torch.randn(copies, BATCH, 40)
    y = torch.randint(0, 10, (copies, BATCH))
    stacks = {}
    for kernel in ("aten", "onednn"):
        torch.manual_seed(0)
        model = StackedModel([mlp(40, 10, 256, 2) for _ in range(copies)], [torch.Generator() for _ in range(copies)])
        matmul.set_kernel(model, kernel)
        stacks[kernel] = (model, Adam(model.parameters(), 1e-3))

    def stacked_steps(kernel: str) -> float:
        model, opt = stacks[kernel]
        start = time.perf_counter()
        for _ in range(50):
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - start

    separate, stacked = [], []
    for _ in range(rounds):
        times = {k: (_epoch_seconds(t), stacked_steps(k)) for k, t in trainers.items()}
        separate.append(times["onednn"][0] / times["aten"][0])
        stacked.append(times["onednn"][1] / times["aten"][1])
    return {"separate": statistics.median(separate), f"{copies} stacked": statistics.median(stacked)}


LAYERS = [(100, 40, 256), (100, 256, 256), (100, 256, 10), (100, 128, 128), (100, 128, 256), (100, 512, 512),
          (32, 256, 256), (32, 128, 256), (32, 64, 64)]  # (batch, in, out)  # fmt: skip


def layers(rounds: int, repeats: int = 200) -> list[tuple[tuple[int, int, int], float, float]]:
    """A Linear layer's forward and backward products (y = x Wᵀ: y, x's gradient gy W, W's
    gradient gyᵀ x) by ATen (``torch.mm``, MKL) and by oneDNN (``reglab.matmul``'s product),
    µs for the three, the two alternated ``rounds`` times: [(shape, ATen, oneDNN)]."""
    from reglab.matmul import _lp

    def aten(x, w, gy):
        torch.mm(x, w.t()), torch.mm(gy, w), torch.mm(gy.t(), x)

    def onednn(x, w, gy):
        _lp(x, w), _lp(gy, w.t()), _lp(gy.t(), x.t())

    out = []
    for batch, fan_in, fan_out in LAYERS:
        x, w, gy = torch.randn(batch, fan_in), torch.randn(fan_out, fan_in), torch.randn(batch, fan_out)
        times: dict[str, list[float]] = {"aten": [], "onednn": []}
        for _ in range(rounds + 1):  # the first round warms up (oneDNN builds its kernels)
            for name, fn in (("aten", aten), ("onednn", onednn)):
                start = time.perf_counter()
                for _ in range(repeats):
                    fn(x, w, gy)
                times[name].append((time.perf_counter() - start) / repeats * 1e6)
        aten_us, onednn_us = (statistics.median(times[k][1:]) for k in ("aten", "onednn"))
        out.append(((batch, fan_in, fan_out), aten_us, onednn_us))
    return out


KINDS = {  # operator name (without "aten::") -> kind; the rest is "other"
    "matrix products": ("mm", "addmm", "bmm", "baddbmm", "linear", "matmul"),
    "elementwise (ReLU, bias sums)": ("relu", "clamp_min", "threshold_backward", "sum", "add_", "add", "mul", "t"),
    "loss (log-softmax, NLL)": ("_log_softmax", "_log_softmax_backward_data", "nll_loss_forward",
                                "nll_loss_backward", "cross_entropy_loss", "log_softmax", "nll_loss_nd"),
    "optimizer (fused Adam kernel)": ("_fused_adam_",),
    "indexing the batch": ("index", "index_select", "randperm", "stack"),
}  # fmt: skip


def profile(steps: int = 200) -> None:
    """Self CPU time per step of a baseline ``Trainer`` step, by kind of operator (the profiler's
    own cost inflates the total; the shares are what to read)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    data = _data()
    torch.manual_seed(0)
    model = mlp(40, 10, 256, 2, init="auto")
    trainer = Trainer(model, data, Adam(model.parameters(), 1e-3), epochs=1, batch_size=BATCH)
    trainer.train_epoch()
    epochs = max(1, steps // (N // BATCH))
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(epochs):
            trainer.train_epoch()
    kinds: dict[str, float] = {}
    others: dict[str, float] = {}
    for event in prof.key_averages():
        name = event.key.removeprefix("aten::")
        kind = next((k for k, names in KINDS.items() if name in names), None)
        if kind is None:
            kind = "autograd engine, optimizer wrapper, Python" if not event.key.startswith("aten::") else "other aten"
        if kind == "other aten":
            others[name] = event.self_cpu_time_total
        kinds[kind] = kinds.get(kind, 0.0) + event.self_cpu_time_total
    total = sum(kinds.values())
    per_step = epochs * (N // BATCH)
    print(f"baseline step under the profiler: {total / per_step:.0f} us")
    for kind, us in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:42s} {us / per_step:7.0f} us  {us / total:5.1%}")
    top = sorted(others.items(), key=lambda kv: -kv[1])[:6]
    print("  other aten, largest: " + ", ".join(f"{name} {us / per_step:.0f} us" for name, us in top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--layers", action="store_true", help="only a Linear layer's products, MKL and oneDNN")
    parser.add_argument("--joined", action="store_true", help="only arms stacked together, as one")
    parser.add_argument("--profile", action="store_true", help="only the breakdown of a baseline step")
    parser.add_argument("--evaluation", action="store_true", help="only a stacked model's validation pass")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.layers:
        print("| batch, in → out | MKL | oneDNN | ratio |\n|---|---|---|---|")
        for (batch, fan_in, fan_out), aten, onednn in layers(args.rounds):
            print(f"| {batch}, {fan_in} → {fan_out} | {aten:.0f} | {onednn:.0f} | {onednn / aten:.2f} |")
        return None
    if args.joined:
        print("| arms | each arm's seeds stacked apart | all as one model | ratio |\n|---|---|---|---|")
        for arms, (apart, together) in joined(args.rounds).items():
            print(f"| {' + '.join(arms)} | {apart * 1e3:.0f} ms | {together * 1e3:.0f} ms | {together / apart:.2f}x |")
        return None
    if args.profile:
        return profile()
    if args.evaluation:
        print("| copies | copy by copy | all at once | ratio |\n|---|---|---|---|")
        for copies, (apart, together) in evaluation(args.rounds).items():
            print(f"| {copies} | {apart * 1e3:.2f} ms | {together * 1e3:.2f} ms | {together / apart:.2f}x |")
        return None
    peak, rate, step, ratio = trial_rate(args.rounds)
    print(f"matmul on the step's shapes: {peak:.1f} GFLOP/s; the baseline trial: {rate:.1f} GFLOP/s "
          f"({step * 1e3:.2f} ms a step): {ratio:.0%} of it (the median of the rounds' ratios)")  # fmt: skip
    ours, bare = overhead(args.rounds)
    print(f"width-8 step: reglab {ours * 1e6:.0f} us, bare loop with fused Adam {bare * 1e6:.0f} us: "
          f"{ours / bare:.2f}x")  # fmt: skip
    for copies in (3, 6, 9, 12):
        a, b = stacking(copies, args.rounds)
        print(f"stacked S = {copies}: {b * 1e3:.3f} ms per trial-step, separate {a * 1e3:.3f} ms: {b / a:.2f}x")
    for name, (kernel, chain) in kernel_paths(args.rounds).items():
        print(f"{name}: kernel path {kernel * 1e3:.3f} ms a step, chain {chain * 1e3:.3f} ms: "
              f"{kernel / chain:.2f}x")  # fmt: skip
    from reglab.matmul import auto_kernel, onednn_available

    if onednn_available():
        ratios = kernels(args.rounds)
        print(f"oneDNN's products against ATen's (auto is {auto_kernel()} here): "
              + ", ".join(f"{name} {r:.2f}x" for name, r in ratios.items()))  # fmt: skip


if __name__ == "__main__":
    main()
