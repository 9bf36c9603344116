"""Who holds a study's running trial (a lease: host, boot id, PID namespace, pid, the process's
start time, the last beat) and whether that worker is gone (``storage.py`` says how they are used)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

GRACE = 60.0  # a lease this old (any host) means its worker is gone


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """Who runs a trial: host, boot id, PID namespace, pid and the process's start time (to
    tell a reused pid)."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "boot": _boot_id(), "pidns": _pid_namespace(), "pid": pid,
            "start": _start_time(pid)}  # fmt: skip


def _pid_namespace() -> str:
    """This process's PID namespace (Linux: ``pid:[4026531836]``); "" where unknown. Two
    containers may share a host name and a boot id but not their pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def lease_is_dead(lease: dict[str, Any] | None, now: float, started: float | None, held: bool = False) -> bool:
    """Whether a RUNNING trial's worker is gone: its process is not alive on this host (or it
    is this process, which no longer ``held`` it: a call that failed part-way), or its lease
    (or, without a lease, its start) is older than ``GRACE``."""
    if not lease:
        return started is not None and now - started > GRACE
    me = process_identity()
    same = [lease.get(k) == me[k] and me[k] for k in ("host", "boot", "pidns")]
    if all(same):  # the pid means the same process here: ask the system
        mine = lease["pid"] == me["pid"] and lease.get("start") == me["start"]
        return not held if mine else _start_time(lease["pid"]) != lease.get("start")
    return now - lease.get("beat", 0.0) > GRACE
