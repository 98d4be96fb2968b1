"""The keeper: the Landlock wall's stand-in for a pid namespace's pid 1. Stdlib only.

The Landlock wall has no pid namespace whose end takes every process of the session with it.
So the process the host starts forks the worker and stays behind it as the session's keeper,
before the wall goes up (``landlock.enter``):

- it is a child subreaper, so every process of the session whose parent dies (a daemon's
  double fork, ``setsid``) becomes its child rather than init's: the session's processes stay
  one tree below it, whatever the code does, even after the worker itself is gone;
- it reaps those orphans (no zombie fills the session's process budget);
- when the worker ends, it kills every process left in the tree, reaps them, and exits with
  the worker's status (the same signal when it was killed by one), so the host reads the
  worker's end from it;
- it forwards the host's SIGINT (an interrupt) to the worker.

It runs no untrusted code and reads nothing from the session. It stays outside the Landlock
domain, so with Landlock's signal scope (ABI 6) the code cannot signal it; seccomp refuses
``ptrace``. The host kills the whole tree below it, then it, when the session ends.
"""

from __future__ import annotations

import os
import resource
import signal
import time

from .process_tree import kill_child

__all__ = ["keep"]


def keep(worker: int, socket_fd: int) -> None:
    """Be the keeper of ``worker`` until it ends; never returns."""
    os.close(socket_fd)  # the worker's end of the host's socket: the host sees EOF when it dies
    signal.signal(signal.SIGINT, lambda signum, frame: _forward(worker, signum))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:  # cannot happen while the worker lives; be safe
            os._exit(0)
        if pid == worker:
            break
    _end_the_rest()
    _exit_like(status)


def _forward(worker: int, signum: int) -> None:
    try:  # noqa: SIM105 (contextlib costs the worker's start an import)
        os.kill(worker, signum)
    except ProcessLookupError:
        pass


def _end_the_rest() -> None:
    """SIGKILL every process still below the keeper, and reap them, until none is left."""
    while True:
        for pid, parent in _descendants():
            kill_child(pid, parent)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return  # no child left, and a process's children become ours when it dies
        time.sleep(0.001)


def _descendants() -> list[tuple[int, int]]:
    """Every process below the keeper, with the parent it was listed under."""
    found: list[tuple[int, int]] = []
    stack = [os.getpid()]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
                children = [int(p) for p in f.read().split()]
        except OSError:
            continue
        found += [(child, pid) for child in children]
        stack += children
    return found


def _exit_like(status: int) -> None:
    """Exit as the worker did: its exit code, or killed by the same signal."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the workspace
        if signum != signal.SIGKILL:
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # a signal that does not end a process by default
    os._exit(os.waitstatus_to_exitcode(status))
