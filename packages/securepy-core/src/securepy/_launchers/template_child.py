"""A session forked from a template, as the host holds it: signalled through pidfds (its worker
and its namespace's pid 1), its exit status and CPU time reported by the template (the
worker's parent), its cgroup and uid lease released once nothing of it can run."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading

from .._limits import Limits
from ..errors import SandboxUnavailableError
from .base import describe_signal_exit
from .cgroups import ChildCgroup
from .identity import Identity
from .procfs import read_process_usage

__all__ = ["TemplateChild"]

logger = logging.getLogger("securepy")

_EXIT_TIMEOUT = 5.0


class TemplateChild:
    """A session forked from a template: signalled through a pidfd, its exit status reported
    by the template (its parent)."""

    sandboxed = True
    wall = "namespaces"

    def __init__(self, pidfd: int, cgroup: ChildCgroup | None, limits: Limits,
                 reaper_pidfd: int = -1, identity: Identity | None = None) -> None:
        self._pidfd = pidfd
        self._pid = _host_pid(pidfd)
        self._reaper_pidfd = reaper_pidfd
        self._cgroup = cgroup
        self._limits = limits
        self._identity = identity
        self._exited = threading.Event()
        self._namespace_gone = threading.Event()
        self._identity_lock = threading.Lock()
        self._killed = False
        if reaper_pidfd < 0:
            self._namespace_gone.set()
        self._status: int | None = None
        self._cpu_seconds = 0.0

    @property
    def pid(self) -> int:
        return self._pid

    def poll(self) -> int | None:
        return self._status

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired("securepy session", timeout or 0.0)
        assert self._status is not None
        return self._status

    def interrupt(self) -> None:
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL the session's worker and its reaper (the pid namespace, and everything in
        it, dies with the reaper), wait for the template to reap the worker, remove its
        cgroup. Idempotent. The uid is given back once the template reports the reaper reaped
        too (then nothing of the namespace can run): at once if it already has, else from the
        template's reader when it does, so a kill does not wait for that last step."""
        if not self._exited.is_set():
            self._signal(signal.SIGKILL)
        if not self._namespace_gone.is_set() and self._reaper_pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._reaper_pidfd, signal.SIGKILL)
        if not self._exited.wait(_EXIT_TIMEOUT):
            logger.warning("session %d did not end in %.0f s", self._pid, _EXIT_TIMEOUT)
        for name in ("_pidfd", "_reaper_pidfd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
        if self._cgroup is not None:
            self._cgroup.kill_and_remove()
            self._cgroup = None
        with self._identity_lock:
            self._killed = True
            if self._namespace_gone.is_set():
                self._release_identity()

    def read_startup_error(self) -> str:
        return ""  # a session that cannot isolate itself says why on its socket

    def describe_exit(self, status: int) -> str | None:
        """The worker is pid 1 of its namespace, where the kernel's SIGXCPU is ignored and the
        hard CPU limit ends it with SIGKILL: the CPU time the template saw names that case."""
        if status == -signal.SIGKILL:
            if self._cgroup is not None and self._cgroup.oom_killed():
                return "memory"
            limit = self._limits.cpu_seconds
            if limit is not None and self._cpu_seconds >= limit:
                return "cpu_seconds"
        return describe_signal_exit(-status) if status < 0 else None

    def resource_usage(self) -> dict[str, float] | None:
        return None if self._exited.is_set() else read_process_usage(self._pid)

    def exited(self, status: int, cpu_seconds: float) -> None:
        """Called by the template's reader: the session ended with wait status ``status``."""
        self._cpu_seconds = cpu_seconds
        self._status = os.waitstatus_to_exitcode(status)
        self._exited.set()

    def reaper_exited(self) -> None:
        """Called by the template's reader: the session's pid 1 was reaped, so nothing of its
        namespace lives (its uid is free once the session was killed)."""
        with self._identity_lock:
            self._namespace_gone.set()
            if self._killed:
                self._release_identity()

    def _release_identity(self) -> None:
        if self._identity is not None:
            self._identity.release()
            self._identity = None

    def _signal(self, signum: int) -> None:
        if self._pidfd >= 0 and not self._exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signum)


def _host_pid(pidfd: int) -> int:
    """The pid (in our pid namespace) of the process ``pidfd`` refers to; -1 once it has
    ended."""
    with open(f"/proc/self/fdinfo/{pidfd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise SandboxUnavailableError("cannot read the session's pid from its pidfd")
