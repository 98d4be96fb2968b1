"""Resource limits for a session's child process."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

__all__ = ["THREAD_STACK_BYTES", "Limits", "address_space_bytes"]

MiB = 1024 * 1024


@typing.final
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Resource limits applied to a session's child before any untrusted code runs.

    Every field is a positive number or ``None``; ``None`` turns that one limit off, explicitly.
    ``Limits()`` is the safe default set, not "unlimited". The rlimits are set with soft equal to
    hard, so the code inside cannot raise them again. Derive variants with
    ``dataclasses.replace(Limits(), memory_bytes=2 * 1024**3)``.

    Attributes:
        cpu_seconds: CPU time of the child process, in seconds, over the session's life
            (RLIMIT_CPU). Reaching it kills the child; the session restarts with a fresh budget.
        memory_bytes: the memory cgroup's limit where the host has one; and the child's
            address space (RLIMIT_AS), plus an allowance for what threads reserve without
            using it (a stack each, one malloc arena), so many threads still start.
        file_size_bytes: largest file the code may write (RLIMIT_FSIZE).
        processes: processes and threads the code may run at once, besides the worker's own
            two (pids cgroup where available, otherwise RLIMIT_NPROC).
        open_files: file descriptors per process (RLIMIT_NOFILE).
        workspace_bytes: size of the private tmpfs that is the workspace and /tmp (sandbox only).
        output_bytes: stdout plus stderr kept per execution; the rest is dropped behind a
            visible truncation marker.
    """

    cpu_seconds: float | None = 60
    memory_bytes: int | None = 512 * MiB
    file_size_bytes: int | None = 50 * MiB
    processes: int | None = 64
    open_files: int | None = 256
    workspace_bytes: int | None = 128 * MiB
    output_bytes: int | None = 1 * MiB

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(
                    f"Limits.{field.name} must be a number or None, not {type(value).__name__}"
                )
            if field.name != "cpu_seconds" and not isinstance(value, int):
                raise TypeError(f"Limits.{field.name} must be a whole number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"Limits.{field.name} must be positive, got {value!r}; "
                    "pass None to turn this limit off"
                )
        if self.open_files is not None and self.open_files < 16:
            raise ValueError(
                f"Limits.open_files must be at least 16 (the worker needs a few), "
                f"got {self.open_files}"
            )

    def to_wire(self) -> dict[str, Any]:
        """The limits as a plain dict, for the child's bootstrap and the audit log."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


# What threads reserve without using it, which RLIMIT_AS counts (it held 13 threads in 512 MiB):
# a stack each (the worker gives Python threads THREAD_STACK_BYTES; glibc's default is 8 MiB) and
# glibc's malloc arenas (64 MiB of reservation each; the child runs with MALLOC_ARENA_MAX=2, so
# one more). The memory cgroup counts only what is used, so it needs no allowance.
THREAD_STACK_BYTES = 2 * MiB
_ARENA_RESERVE = 64 * MiB
_THREADS_WHEN_UNLIMITED = 64


def address_space_bytes(limits: Limits) -> int | None:
    """RLIMIT_AS for ``limits``: the memory limit plus what its threads may reserve."""
    if limits.memory_bytes is None:
        return None
    threads = limits.processes if limits.processes is not None else _THREADS_WHEN_UNLIMITED
    return limits.memory_bytes + threads * (THREAD_STACK_BYTES + 4096) + _ARENA_RESERVE


def resolve_limits(limits: Limits | None) -> Limits:
    """``None`` means the safe defaults; anything else must be a ``Limits``."""
    if limits is None:
        return Limits()
    if not isinstance(limits, Limits):
        raise TypeError(
            f"limits must be a securepy.Limits or None, not {type(limits).__name__}; "
            "build one with securepy.Limits(memory_bytes=..., ...)"
        )
    return limits
