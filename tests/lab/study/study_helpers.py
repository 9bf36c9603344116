"""Helpers shared by the study tests."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reglab.lab.recipe import Recipe


def tiny_base(path, epochs=6) -> Recipe:
    return Recipe().updated(
        {
            "data.name": "npz",
            "data.path": str(path),
            "data.batch_size": 32,
            "model.width": 16,
            "training.epochs": epochs,
        }
    )


def run_cli(*args, timeout=300, **kwargs):
    """``reglab ARGS`` in a fresh process (one torch thread, like a worker of a busy machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "reglab.lab.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def held_cli(args: list, how: str, mark: Path | None = None) -> subprocess.Popen:
    """``reglab ARGS`` started through ``held_cli.py`` with ``REGLAB_HOLD=how`` (one torch thread
    per process, as ``run_cli``); stderr piped. With ``mark`` (a folder, made here), a process
    that holds its group marks a file in it (``holding(mark)``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REGLAB_HOLD": how}
    if mark is not None:
        mark.mkdir(parents=True)
        env["REGLAB_HOLD_MARK"] = str(mark)
    launcher = Path(__file__).with_name("held_cli.py")
    return subprocess.Popen([sys.executable, str(launcher), *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


def holding(mark: Path) -> bool:
    """Whether a process started by ``held_cli(..., mark=mark)`` holds its stack group."""
    return any(mark.iterdir())


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 120) -> None:
    """Kills ``proc`` (SIGKILL) once ``ready()`` holds, asserting that it still ran then and that
    ``ready()`` came within ``timeout`` s (``what`` says what it waited for); killed either way."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
        assert ready(), what
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def planned(store, arms):
    """The arms a finished study ran: the combination only where some arm helped on validation
    loss (a combination of nothing would be the baseline again, and is not run)."""
    combo = store.attrs().get("combination")  # None: not derived yet (a study stopped part-way)
    return [a for a in arms if a != "combination" or combo is None or combo.get("arms")]
