"""The session's resource limits, applied as rlimits inside the sandbox. Stdlib only."""

from __future__ import annotations

import resource
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = ["apply_limits"]


def apply_limits(limits: dict[str, Any], *, nproc: bool) -> None:
    wanted = {
        resource.RLIMIT_AS: limits.get("memory_bytes"),
        resource.RLIMIT_CPU: limits.get("cpu_seconds"),
        resource.RLIMIT_FSIZE: limits.get("file_size_bytes"),
        resource.RLIMIT_NOFILE: limits.get("open_files"),
    }
    if nproc:
        wanted[resource.RLIMIT_NPROC] = limits.get("processes")
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
