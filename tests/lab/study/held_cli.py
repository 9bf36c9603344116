"""``python held_cli.py ARGS``: the reglab CLI with its stack groups held, for the tests that must
see a study's workers at a given moment (timing them cannot: a group of a few seconds may come
and go between two polls of a loaded machine). A spawned worker runs its parent's main script
as ``__mp_main__``, so the replacement below applies in the parent and in every worker.

``REGLAB_HOLD`` says how:

- ``forever``: a stack group never trains; its worker waits with the group's trials leased
  until it is killed with its parent (at most ``HOLD_SECONDS``, then an error).
- ``after:K``: a process's first K stack groups train, its next one is held as ``forever``.
- ``meet:DIR:N``: a worker's stack group trains once N workers have each entered one (a worker
  marks ``DIR/<pid>`` as it enters), so that each of N workers is known to have run a group.

Where ``REGLAB_HOLD_MARK`` names a folder, a process about to hold its group forever marks
``MARK/<pid>``: the test then knows the group is held, not training (a polled count of running
trials cannot tell them apart, and a group that trains may end between two polls).
"""

import os
import sys
import time
from pathlib import Path

import reglab.lab.stack

HOLD_SECONDS = 300
_train = reglab.lab.stack.run_stacked
_trained = 0  # stack groups this process has trained


def _wait_to_be_killed():
    if os.environ.get("REGLAB_HOLD_MARK"):  # the group is leased and will never train: say so
        (Path(os.environ["REGLAB_HOLD_MARK"]) / str(os.getpid())).touch()
    time.sleep(HOLD_SECONDS)
    raise RuntimeError(f"held for {HOLD_SECONDS} s and never killed")


def _held(recipes, outs, threads=None):
    global _trained
    how = os.environ["REGLAB_HOLD"]
    if how == "forever":
        _wait_to_be_killed()
    elif how.startswith("after:"):
        if _trained >= int(how.removeprefix("after:")):
            _wait_to_be_killed()
        _trained += 1
    elif how.startswith("meet:"):
        _, folder, count = how.split(":")
        (Path(folder) / str(os.getpid())).touch()
        deadline = time.time() + HOLD_SECONDS
        while len(list(Path(folder).iterdir())) < int(count):
            if time.time() > deadline:
                raise RuntimeError(f"{count} workers did not meet in {HOLD_SECONDS} s")
            time.sleep(0.05)
    else:
        raise ValueError(f"REGLAB_HOLD must be forever, after:K or meet:DIR:N; got {how!r}")
    return _train(recipes, outs, threads)


reglab.lab.stack.run_stacked = _held

if __name__ == "__main__":
    from reglab.lab.cli import main

    sys.exit(main(sys.argv[1:]))
