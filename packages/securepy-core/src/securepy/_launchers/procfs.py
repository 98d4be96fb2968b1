"""Reading a process's CPU time, peak memory and children from /proc."""

from __future__ import annotations

import os

from .._worker.process_tree import parent_pid

__all__ = ["child_pids", "parent_pid", "read_process_usage"]

# (Windows has no sysconf, and no /proc: there every read below finds nothing.)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_process_usage(pid: int) -> dict[str, float] | None:
    """CPU seconds (user + system) and peak resident memory in bytes of ``pid``, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().rsplit(b")", 1)[1].split()
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return None
    cpu = (int(stat[11]) + int(stat[12])) / _CLOCK_TICKS
    peak = 0
    for line in status.splitlines():
        if line.startswith(b"VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return {"cpu_seconds": cpu, "peak_memory_bytes": float(peak)}


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads), oldest first; empty if it is gone."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return sorted(found)
