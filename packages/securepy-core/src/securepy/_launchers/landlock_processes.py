"""Finding and ending a Landlock session's processes from the host (no pid namespace to end).

The process the host starts is the session's keeper (``_worker/keeper.py``), a child subreaper
above the worker: every process of the session is in its tree. As root each session also has a
uid of its own, which finds whatever the tree could not hold (a keeper the code killed on a
kernel without Landlock's signal scope).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from .._worker.process_tree import kill_child
from .procfs import child_pids

__all__ = ["first_child", "kill_tree", "kill_uid"]


def first_child(pid: int) -> int | None:
    """The worker: the keeper's first child (orphans it adopts come after it)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            children = f.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def kill_tree(root: int, *, timeout: float = 5.0) -> None:
    """SIGKILL every descendant of ``root`` until a pass finds none."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: list[tuple[int, int]] = []  # (pid, its parent when listed)
        stack = [root]
        while stack:
            parent = stack.pop()
            for pid in child_pids(parent):
                found.append((pid, parent))
                stack.append(pid)
        if not found:
            return
        for pid, parent in found:
            kill_child(pid, parent)
        time.sleep(0.001)


def kill_uid(uid: int, *, timeout: float = 5.0) -> bool:
    """SIGKILL every process running as ``uid``; True once none is left."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    left.append(int(name))
            except OSError:
                continue
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)
