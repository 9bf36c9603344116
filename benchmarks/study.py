"""Wall time of the default study (``reglab study``: 14 arms × 3 seeds, MNIST-1D, 100 epochs)
with 1 and with 2 local workers, each in a fresh output folder, as a user runs it.

    python benchmarks/study.py            # both; prints times and the speed-up (1 worker / 2)
    python benchmarks/study.py --workers 2 # one of them
    python benchmarks/study.py --quick     # 20 epochs, to try the benchmark itself
    python benchmarks/study.py --ceiling   # the most 2 workers can gain over 1 on this machine
    python benchmarks/study.py --studies   # every built-in study with 2 workers: wall time and claims
    python benchmarks/study.py --studies capacity penalties --keep   # some of them, folders kept
    python benchmarks/study.py --stacking  # 2 workers, the seeds of each arm stacked and not: the ratio
    python benchmarks/study.py --stacking --workers 1  # the same with one worker
    python benchmarks/study.py --kernels --rounds 3  # 2 workers, stacked, training.matmul = aten / onednn

Issue 5 asks for: 2 workers under 300 s on 2 CPU cores, and at least 1.7× faster than 1; issue 26
for each built-in study under 300 s with --workers 2 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(
    workers: int,
    epochs: int | None,
    threads: int | None = None,
    keep: bool = False,
    study: str | None = None,
    stack: bool = True,
    matmul: str | None = None,
) -> float:
    out = tempfile.mkdtemp(prefix=f"reglab-study-bench-{study or 'default'}-{workers}w-")
    cmd = [sys.executable, "-m", "reglab.lab.cli", "study", *([study] if study else []), "--workers", str(workers),
           "--out", out, "--quiet"]  # fmt: skip
    if threads:
        cmd += ["--threads", str(threads)]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    cmd.append("--stack" if stack else "--no-stack")  # said either way: the default is the CLI's
    if matmul:
        cmd += ["--set", f"training.matmul={matmul}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if study:
        print_claims(Path(out))
    if keep:
        print(f"  output kept in {out}")
    else:
        shutil.rmtree(out)
    return seconds


def trial_seconds(threads: int, runs: int = 1, epochs: int | None = None) -> list[float]:
    """Training time of the study's baseline trial (``reglab train``'s default recipe) with
    ``threads`` torch threads, ``runs`` copies at once; from each run's summary.json."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    outs = [tempfile.mkdtemp(prefix="reglab-ceiling-") for _ in range(runs)]
    extra = ["--epochs", str(epochs)] if epochs else []
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reglab.lab.cli", "train", "--out", o, "--quiet", *extra],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for o in outs
    ]
    for p in procs:
        if p.wait():
            raise SystemExit("reglab train failed")
    seconds = []
    for o in outs:
        summary = json.loads(Path(o, "summary.json").read_text())
        assert summary["threads"] == threads, summary["threads"]
        seconds.append(summary["train_seconds"])
        shutil.rmtree(o)
    return seconds


def ceiling(epochs: int | None, rounds: int = 3) -> None:
    """1 worker runs trials one at a time on all (2) cores; 2 workers run two at once on one
    core each. Their speed-up can be at most 2 · t(2 threads) / t(1 thread, two at once).
    The three timings take turns, ``rounds`` times (medians): this machine's speed drifts."""
    alone, single, pair = [], [], []
    for _ in range(rounds):
        alone += trial_seconds(2, epochs=epochs)
        single += trial_seconds(1, epochs=epochs)
        pair.append(max(trial_seconds(1, runs=2, epochs=epochs)))
    a, s, p = (statistics.median(v) for v in (alone, single, pair))
    print(
        f"baseline trial (medians of {rounds}): {a:.2f} s with 2 threads; {s:.2f} s with 1 thread alone; {p:.2f} s "
        "with 1 thread, two at once"
    )
    print(f"  each: 2 threads {_list(alone)}; 1 thread {_list(single)}; two at once {_list(pair)}")
    print(f"intra-op threads make a trial {s / a:.2f}x faster; ceiling of the 2-worker speed-up: {2 * a / p:.2f}x")


def print_claims(out: Path) -> None:
    """The study's claims table, as BENCHMARKS.md records it (a Markdown table)."""
    path = out / "claims.json"
    if not path.exists():
        return
    print("| claim | what this data shows | verdict |\n|---|---|---|")
    for c in json.loads(path.read_text()):
        said = c["measurement"] + (f" ({c['decide']})" if c.get("decide") else "")
        print(f"| {c['claim']} | {said} | **{c['verdict']}** |")


def studies(names: list[str], keep: bool) -> None:
    """Each built-in study as a user runs it (``reglab study NAME --workers 2``), timed."""
    from reglab.lab.study.chapters import STUDIES

    cores = len(os.sched_getaffinity(0))
    for name in names or list(STUDIES):
        print(f"## {name} ({cores} CPU cores, --workers 2)", flush=True)
        seconds = run(2, None, keep=keep, study=name)
        print(f"wall time: {seconds:.1f} s\n", flush=True)


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def stacking(epochs: int | None, workers: int = 2, rounds: int = 1) -> None:
    """The default study with ``workers`` workers, stacked (``--stack``) and not, in alternation."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for stack in (False, True):
            times[stack].append(run(workers, epochs, stack=stack))
            print(f"{'stacked' if stack else 'separate'}: {times[stack][-1]:.1f} s", flush=True)
    a, b = statistics.median(times[False]), statistics.median(times[True])
    print(f"default study, {workers} worker(s): stacked {b:.1f} s, separate {a:.1f} s: {b / a:.2f}x")


def kernels(epochs: int | None, workers: int = 2, rounds: int = 1) -> None:
    """The default study (stacked, ``workers`` workers) with the Linear layers multiplied by ATen
    and by oneDNN (``training.matmul``), alternated (ABBA: each side first in every other round)."""
    times: dict[str, list[float]] = {"aten": [], "onednn": []}
    for i in range(rounds):
        for matmul in ("aten", "onednn") if i % 2 == 0 else ("onednn", "aten"):
            times[matmul].append(run(workers, epochs, matmul=matmul))
            print(f"{matmul}: {times[matmul][-1]:.1f} s", flush=True)
    a, b = statistics.median(times["aten"]), statistics.median(times["onednn"])
    print(f"default study, {workers} worker(s), stacked: oneDNN {b:.1f} s, ATen {a:.1f} s (medians of {rounds}): "
          f"{b / a:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="*", default=[2, 1])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--single-thread", action="store_true", help="also time 1 worker limited to 1 thread")
    parser.add_argument("--keep", action="store_true", help="keep the study folders (report, results) and print where")
    parser.add_argument(
        "--ceiling", action="store_true", help="only time one trial with 2 threads, with 1, and two with 1 at once"
    )
    parser.add_argument("--studies", nargs="*", metavar="NAME", help="time the built-in studies (default: all)")
    parser.add_argument("--stacking", action="store_true",
                        help="with --stack and without, alternated (2 workers, or the --workers given)")  # fmt: skip
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="training.matmul = aten and onednn, alternated (2 workers, or the --workers given)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --kernels or --stacking")  # fmt: skip
    args = parser.parse_args()
    if args.kernels:
        return kernels(20 if args.quick else None, args.workers[0] if len(args.workers) == 1 else 2, args.rounds)
    if args.stacking:
        return stacking(20 if args.quick else None, args.workers[0] if len(args.workers) == 1 else 2, args.rounds)
    if args.studies is not None:
        return studies(args.studies, args.keep)
    if args.ceiling:
        return ceiling(20 if args.quick else None)
    cores = len(os.sched_getaffinity(0))
    print(f"default study, {cores} CPU cores, torch threads per worker = cores // workers")
    epochs = 20 if args.quick else None
    times = {}
    for w in args.workers:
        times[w] = run(w, epochs, keep=args.keep)
        print(f"workers={w} ({max(1, cores // w)} threads each): {times[w]:7.1f} s", flush=True)
    if 1 in times and 2 in times:
        print(
            f"speed-up 1 worker / 2 workers: {times[1] / times[2]:.2f}x   (2 workers / 1 = {times[2] / times[1]:.3f})"
        )
    if args.single_thread:
        single = run(1, epochs, threads=1, keep=args.keep)
        print(f"workers=1 (1 thread): {single:7.1f} s", flush=True)
        if 2 in times:
            print(f"speed-up 1 single-thread worker / 2 workers: {single / times[2]:.2f}x")


if __name__ == "__main__":
    main()
