"""The session's resource limits, applied as rlimits inside the sandbox. Stdlib only."""

from __future__ import annotations

import _thread
import sys

try:
    import resource
except ImportError:  # Windows: no rlimits; there the host's timeout is the one limit enforced
    resource = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = ["apply_limits", "thread_refused_by"]

_OWN_THREADS = 2  # the worker's main thread and output forwarder (WORKER_THREADS, host side)


def apply_limits(limits: dict[str, Any], *, nproc: bool, address_space: int | None = None,
                 thread_stack: int | None = None) -> None:
    """Set the rlimits. ``address_space``: RLIMIT_AS as the host computed it (the memory limit
    plus what threads reserve, see _limits.py; default: the memory limit); ``thread_stack``:
    the stack size of the threads Python starts, which that allowance counts on."""
    processes = limits.get("processes")
    if thread_stack:
        try:  # noqa: SIM105 (contextlib costs the worker's start an import)
            _thread.stack_size(thread_stack)
        except (ValueError, RuntimeError):
            pass  # the platform's default stays
    if resource is None:
        return
    memory = limits.get("memory_bytes")
    if address_space is None:
        address_space = memory
    wanted = {
        resource.RLIMIT_AS: address_space,
        resource.RLIMIT_CPU: limits.get("cpu_seconds"),
        resource.RLIMIT_FSIZE: limits.get("file_size_bytes"),
        resource.RLIMIT_NOFILE: limits.get("open_files"),
        # No core dumps, soft and hard: a crash would write the process's memory into the
        # workspace, or (where core_pattern is a pipe) hand it to a host helper run as root.
        resource.RLIMIT_CORE: 0,
    }
    if nproc and processes is not None:
        # The Landlock wall's keeper is one more process of the uid (see landlock.py).
        landlock = sys.modules.get(__name__.rpartition(".")[0] + ".landlock")
        wanted[resource.RLIMIT_NPROC] = processes + _OWN_THREADS + getattr(landlock, "KEEPER", 0)
    for which, value in wanted.items():
        if value is None:
            continue
        value = int(-(-value // 1))  # ceil, for fractional cpu seconds
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        # For CPU time, soft = hard would end in SIGKILL; one second of headroom lets SIGXCPU
        # arrive first, so the host can name the limit from the exit status.
        ceiling = value + 1 if which == resource.RLIMIT_CPU else value
        if hard != resource.RLIM_INFINITY:
            ceiling = min(ceiling, hard)
        try:
            resource.setrlimit(which, (value, ceiling))
        except (ValueError, OSError):
            if sys.platform.startswith("linux"):
                raise  # on Linux every limit can be set: failing to is an error, not a gap
            # macOS refuses some (RLIMIT_AS among them); sandbox=False there enforces the rest.


def thread_refused_by() -> str:
    """Which limit refused a new thread: "memory" when the address space has no room left for
    its stack, else "processes"."""
    if resource is None:
        return "processes"
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return "processes"
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
            else:
                return "processes"
    except (OSError, ValueError):
        return "processes"
    stack = _thread.stack_size() or 8 * 1024 * 1024
    return "memory" if limit - used < 2 * stack else "processes"
