"""Session options: every option checked once, frozen, shared by sessions and pools."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ._audit import check_audit_path
from ._launchers import WALLS, Launcher
from ._limits import Limits, resolve_limits
from ._mounts import Mount, check_mounts
from ._tools import Tool, collect_tools
from ._worker import protocol

__all__ = [
    "MAX_CODE_LENGTH",
    "USE_SESSION_DEFAULT",
    "OnOutput",
    "SessionConfig",
    "UseSessionDefault",
    "check_timeout",
    "make_config",
]


@typing.final
class UseSessionDefault:
    """The type of :data:`USE_SESSION_DEFAULT`: an argument that was not given, so the
    session's own setting applies (and ``timeout=None`` can still mean "no timeout")."""

    def __repr__(self) -> str:
        return "<session default>"


USE_SESSION_DEFAULT = UseSessionDefault()

OnOutput = Callable[[str, str], Any]

# Longest code accepted by default, in characters (as securer): far over what a model writes
# in one go, and it bounds the host's cost of checking and auditing one snippet.
MAX_CODE_LENGTH = 100_000


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SessionConfig:
    """Every session option, checked once. Pools keep one and start sessions from it."""

    tools: dict[str, Tool]
    sandbox: bool
    limits: Limits
    timeout: float | None
    python: str | None
    max_frame_bytes: int
    max_output_bytes: int | None
    max_tool_calls: int | None
    max_executions: int | None
    max_code_length: int | None
    pre_execute_hook: Callable[[str], Any] | None
    sanitize_errors: bool
    audit_log: str | os.PathLike[str] | None
    audit: Callable[[dict[str, Any]], Any] | None
    verbose: bool
    launcher: Launcher | None
    preload: tuple[str, ...] = ()
    wall: str = "auto"
    trace_content: bool = False
    mounts: tuple[Mount, ...] = ()
    template: bool = True


def make_config(
    tools: Iterable[Tool | Callable[..., Any]] | Tool | Callable[..., Any] = (),
    *,
    sandbox: bool = True,
    limits: Limits | None = None,
    timeout: float | None = 30,
    python: str | None = None,
    max_frame_bytes: int = protocol.MAX_FRAME_BYTES,
    max_output_bytes: int | UseSessionDefault | None = USE_SESSION_DEFAULT,
    max_tool_calls: int | None = None,
    max_executions: int | None = None,
    max_code_length: int | None = MAX_CODE_LENGTH,
    pre_execute_hook: Callable[[str], Any] | None = None,
    sanitize_errors: bool = False,
    audit_log: str | os.PathLike[str] | None = None,
    audit: Callable[[dict[str, Any]], Any] | None = None,
    verbose: bool = False,
    launcher: Launcher | None = None,
    preload: Iterable[str] = (),
    wall: str = "auto",
    trace_content: bool = False,
    mounts: Iterable[Mount] = (),
    template: bool = True,
) -> SessionConfig:
    """Validate and freeze the session options (see :class:`Session`)."""
    if not isinstance(sandbox, bool):
        raise TypeError("sandbox must be True or False")
    if not isinstance(template, bool):
        raise TypeError("template must be True or False")
    if wall not in WALLS:
        raise ValueError(f"wall must be one of {', '.join(map(repr, WALLS))}, got {wall!r}")
    resolved = resolve_limits(limits)
    output_cap = resolved.output_bytes if isinstance(max_output_bytes, UseSessionDefault) else (
        max_output_bytes)
    for name, value in (("max_tool_calls", max_tool_calls), ("max_executions", max_executions),
                        ("max_code_length", max_code_length), ("max_output_bytes", output_cap)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
    if not isinstance(max_frame_bytes, int) or max_frame_bytes < 1024:
        raise ValueError(f"max_frame_bytes must be an integer of at least 1024, got "
                         f"{max_frame_bytes!r}")
    if pre_execute_hook is not None and not callable(pre_execute_hook):
        raise TypeError("pre_execute_hook must be callable")
    if audit is not None and not callable(audit):
        raise TypeError("audit must be a callable that takes one event dict")
    if audit_log is not None:
        check_audit_path(audit_log)
    if isinstance(preload, str):
        raise TypeError("preload must be a list of module names, e.g. ['numpy', 'pandas']")
    modules = tuple(preload)
    for module in modules:
        if not isinstance(module, str) or not all(p.isidentifier() for p in module.split(".")):
            raise ValueError(f"preload: {module!r} is not a module name")
    checked_mounts = check_mounts(mounts)
    if checked_mounts and not sandbox:
        raise ValueError("mounts need the sandbox (sandbox=True): without it the code sees the "
                         "host's files as they are")
    return SessionConfig(
        tools=collect_tools(tools),
        sandbox=sandbox,
        limits=resolved,
        timeout=check_timeout(timeout),
        python=python,
        max_frame_bytes=max_frame_bytes,
        max_output_bytes=output_cap,
        max_tool_calls=max_tool_calls,
        max_executions=max_executions,
        max_code_length=max_code_length,
        pre_execute_hook=pre_execute_hook,
        sanitize_errors=bool(sanitize_errors),
        audit_log=audit_log,
        audit=audit,
        verbose=bool(verbose),
        launcher=launcher,
        preload=modules,
        wall=wall,
        trace_content=bool(trace_content),
        mounts=checked_mounts,
        template=template,
    )


def check_timeout(timeout: Any) -> float | None:
    """A positive, finite number of seconds, or None for no timeout."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, not "
                        f"{type(timeout).__name__}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    return float(timeout)
