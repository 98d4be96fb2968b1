"""The seam between a session and whatever starts its child process.

A session builds a :class:`LaunchSpec` (the worker's argv, the one fd it must inherit, the
limits) and hands it to a :class:`Launcher`. The launcher returns a :class:`ChildProcess` that
the session can interrupt, kill and wait on. ``_session.py`` sees only this module; the
bubblewrap launcher and the unsandboxed one live behind it, and tests plug in their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
from typing import Protocol

from .._interpreter import Interpreter
from .._limits import Limits
from .._mounts import Mount

__all__ = [
    "ChildProcess",
    "LaunchSpec",
    "Launcher",
    "PopenChild",
    "close_pipes",
    "describe_signal_exit",
    "startup_error",
]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class LaunchSpec:
    """What to start.

    Attributes:
        interpreter: the interpreter to run (host's or the ``python=`` option), with the
            directories it needs (prefix, base prefix, sys.path), which a sandbox must bind.
        argv: the full command, starting with the interpreter's executable; the launcher may
            wrap it but must not change it.
        child_fd: the socket fd the child must inherit, at the same number.
        limits: resource limits; the worker's bootstrap applies the rlimits itself, the
            launcher adds what it can enforce from outside (tmpfs sizes, cgroups).
        env: the complete environment for the child (already an allowlist).
        mounts: host directories to expose (checked :class:`securepy.Mount` objects); a
            launcher that cannot honour them must refuse to start (``mounts.target_inside``
            gives each one's absolute place inside).
    """

    interpreter: Interpreter
    argv: tuple[str, ...]
    child_fd: int
    limits: Limits
    env: dict[str, str]
    mounts: tuple[Mount, ...] = ()


class ChildProcess(Protocol):
    """A started child: the worker, possibly inside a sandbox."""

    @property
    def pid(self) -> int:
        """The host pid of the process the launcher started (bubblewrap, or the worker)."""
        ...

    @property
    def sandboxed(self) -> bool:
        """True when the child runs inside the OS sandbox."""
        ...

    def poll(self) -> int | None:
        """Exit status if the child has ended, else None (reaps it)."""
        ...

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to end and reap it; raises subprocess.TimeoutExpired."""
        ...

    def interrupt(self) -> None:
        """Deliver SIGINT to the worker's main thread (KeyboardInterrupt in the code)."""
        ...

    def kill(self) -> None:
        """Kill the child and everything it started, then reap it. Idempotent."""
        ...

    def read_startup_error(self) -> str:
        """What the child wrote to stderr before the worker took over (for start failures)."""
        ...

    def describe_exit(self, status: int) -> str | None:
        """Name the resource limit an exit status points to ("memory", "cpu_seconds",
        "processes", ...), or None."""
        ...

    def resource_usage(self) -> dict[str, float] | None:
        """Child CPU seconds and peak memory bytes, when the launcher can measure them."""
        ...


class Launcher(Protocol):
    """Starts children. ``sandboxed`` says whether its children run inside the OS sandbox."""

    sandboxed: bool

    def launch(self, spec: LaunchSpec) -> ChildProcess:
        """Start the child described by ``spec``.

        Raises:
            securepy.errors.SandboxUnavailableError: the sandbox cannot start here.
        """
        ...


class PopenChild:
    """What every launcher that starts one ``subprocess.Popen`` shares: pid, poll, wait, and
    the stderr a child wrote before the worker took it over."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._popen.wait(timeout)

    def stderr_fd(self) -> int | None:
        """The fd of this process's end of the child's stderr pipe, None once closed."""
        stderr = self._popen.stderr
        return None if stderr is None or stderr.closed else stderr.fileno()

    def read_startup_error(self) -> str:
        """Whatever the child wrote to stderr before it died, bounded (empty while it runs)."""
        return startup_error(self._popen)


def startup_error(popen: subprocess.Popen[bytes]) -> str:
    """What ``popen`` wrote to its stderr pipe before it died, bounded (empty while it runs)."""
    stderr = popen.stderr
    if stderr is None or stderr.closed or popen.poll() is None:
        return ""
    with contextlib.suppress(OSError, ValueError):
        return stderr.read(65536).decode("utf-8", "replace").strip()
    return ""


def close_pipes(popen: subprocess.Popen[bytes]) -> None:
    """Close this process's ends of ``popen``'s stdin and stderr pipes."""
    for pipe in (popen.stdin, popen.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def describe_signal_exit(signum: int) -> str | None:
    """Which limit a fatal signal points to."""
    if signum == signal.SIGXCPU:
        return "cpu_seconds"
    if signum == signal.SIGXFSZ:
        return "file_size"
    return None
