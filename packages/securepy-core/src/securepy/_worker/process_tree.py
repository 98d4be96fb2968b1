"""A process tree read from /proc, and killed without hitting a stranger. Stdlib only: the
Landlock keeper (inside) and the host's launchers use it alike."""

from __future__ import annotations

import os
import signal

__all__ = ["kill_child", "parent_pid"]


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` (its ``PPid``), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def kill_child(pid: int, parent: int) -> None:
    """SIGKILL ``pid`` if it is still ``parent``'s child. The pidfd is taken before the check:
    had the child been reaped (by a parent the code runs) and its pid taken by another process
    meanwhile, the check fails or the signal goes to the dead child, never to the newcomer."""
    try:
        handle = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        if parent_pid(pid) == parent:
            signal.pidfd_send_signal(handle, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(handle)
