"""Wall time and outcome of ``reglab tune`` as a user runs it (default: every technique that beat
the baseline in the default study, MNIST-1D, MLP 2×256, 60 trials, confirmation on 5 fresh seeds),
in a fresh output folder.

    python benchmarks/tune.py                 # the default, --workers 2
    python benchmarks/tune.py --model cnn     # any flags of reglab tune, passed on
    python benchmarks/tune.py --keep          # keep the output folder and print where

Issue 28 asks for: the default with --workers 2 under 10 minutes on 2 CPU cores, confirmation
included; the confirmed tuned recipe against the default study's best single arm (shift).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    keep = "--keep" in sys.argv
    extra = [a for a in sys.argv[1:] if a != "--keep"]
    out = Path(tempfile.mkdtemp(prefix="reglab-tune-bench-"))
    cmd = [sys.executable, "-m", "reglab.lab.cli", "tune", "--workers", "2", "--out", str(out), "--quiet", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    result = json.loads((out / "tune.json").read_text())
    print(f"reglab tune {' '.join(extra)} --workers 2 on {len(os.sched_getaffinity(0))} CPU cores: {seconds:.1f} s")
    print(f"trials: {result['trials']['complete']} complete, {result['trials']['pruned']} pruned")
    print("| arm | seeds | test accuracy | test loss | p vs baseline (Holm) | verdict |\n|---|---|---|---|---|---|")
    for e in result["confirmation"]:
        acc = "–" if e["test_acc"] is None else f"{e['test_acc']:.3f} ± {e['test_acc_std']:.3f}"
        p = "–" if e["p_value"] is None else f"{e['p_value']:.2g}"
        print(f"| {e['arm']} | {e['seeds']} | {acc} | {e['test_loss']:.3f} ± {e['test_loss_std']:.3f} | {p} | "
              f"{e['verdict']} |")  # fmt: skip
    v = result["tuned_vs_against"]
    print(f"tuned vs {v['versus']}: Δ test loss {v['diff']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}], p = "
          f"{v['p']:.2g}: {v['verdict']}")  # fmt: skip
    print("best changes:", json.dumps(result["best_changes"]))
    for line in result["findings"]:
        print(line)
    if keep:
        print(f"output kept in {out}")
    else:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
