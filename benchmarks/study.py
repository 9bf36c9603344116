"""Wall time of the default study (``reglab study``: 14 arms × 3 seeds, MNIST-1D, 100 epochs)
with 1 and with 2 local workers, each in a fresh output folder, as a user runs it.

    python benchmarks/study.py            # both; prints times and the speed-up (1 worker / 2)
    python benchmarks/study.py --workers 2 # one of them
    python benchmarks/study.py --quick     # 20 epochs, to try the benchmark itself

Issue 5 asks for: 2 workers under 300 s on 2 CPU cores, and at least 1.7× faster than 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def run(workers: int, epochs: int | None, threads: int | None = None, keep: bool = False) -> float:
    out = tempfile.mkdtemp(prefix=f"reglab-study-bench-{workers}w-")
    cmd = [sys.executable, "-m", "reglab.cli", "study", "--workers", str(workers), "--out", out, "--quiet"]
    if threads:
        cmd += ["--threads", str(threads)]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if keep:
        print(f"  output kept in {out}")
    else:
        shutil.rmtree(out)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="*", default=[2, 1])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--single-thread", action="store_true", help="also time 1 worker limited to 1 thread")
    parser.add_argument("--keep", action="store_true", help="keep the study folders (report, results) and print where")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"default study, {cores} CPU cores, torch threads per worker = cores // workers")
    epochs = 20 if args.quick else None
    times = {}
    for w in args.workers:
        times[w] = run(w, epochs, keep=args.keep)
        print(f"workers={w} ({max(1, cores // w)} threads each): {times[w]:7.1f} s", flush=True)
    if 1 in times and 2 in times:
        print(f"speed-up 1 worker / 2 workers: {times[1] / times[2]:.2f}x   (2 workers / 1 = {times[2] / times[1]:.3f})")
    if args.single_thread:
        single = run(1, epochs, threads=1, keep=args.keep)
        print(f"workers=1 (1 thread): {single:7.1f} s", flush=True)
        if 2 in times:
            print(f"speed-up 1 single-thread worker / 2 workers: {single / times[2]:.2f}x")


if __name__ == "__main__":
    main()
