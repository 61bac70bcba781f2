"""Run owners: which process executes a run, and whether it is still alive.

A run killed with ``kill -9`` (or by the OOM killer, or a closed laptop) cannot say it stopped, so its
stored status stays ``running``. Every execution therefore records its owner (host, pid, the process's
start time, so a recycled pid is not mistaken for it) and keeps a heartbeat: the mtime of its journal
file under ``artifacts/journal/`` (touched every flush tick, no database lock needed) and a
``heartbeat_at`` column written with every batch. On this host the pid and start time decide; for an
owner on another host only a fresh heartbeat counts as alive.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Literal

State = Literal["alive", "dead", "unknown"]

#: seconds without a heartbeat after which an owner on another host counts as gone
STALE_SECONDS = 30.0

# run ids executing in this process right now (a resume from another thread must not run them twice)
ACTIVE: set[str] = set()


def _stale_after() -> float:
    try:
        return float(os.environ.get("LLMOPS_HEARTBEAT_STALE", STALE_SECONDS))
    except ValueError:
        return STALE_SECONDS


def process_started(pid: int) -> float | None:
    """Start time (epoch seconds) of a local process, or None when it does not exist."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError):
        return None


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: float

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), process_started(os.getpid()) or 0.0)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started)) if self.started else "unknown time"
        return f"process {self.pid} on host {self.host} (started {when})"


def state(owner: Owner | None, run_id: str, heartbeat: float | None, now: float | None = None) -> State:
    """Is the owner of a ``running`` run alive? Local owners are checked by pid and start time."""
    if owner is None:
        return "dead"
    me = Owner.me()
    if owner.host == me.host:
        if owner.pid == me.pid and abs(owner.started - me.started) < 1.0:
            return "alive" if run_id in ACTIVE else "dead"
        started = process_started(owner.pid)
        if started is None or abs(started - owner.started) >= 1.0:
            return "dead"
        import psutil

        try:
            if psutil.Process(owner.pid).status() == psutil.STATUS_ZOMBIE:
                return "dead"
        except psutil.Error:
            return "dead"
        return "alive"
    if heartbeat is None:
        return "unknown"
    age = (now if now is not None else time.time()) - heartbeat
    return "alive" if age < _stale_after() else "dead"
