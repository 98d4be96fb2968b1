"""One-shot helpers built on Session."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._limits import Limits
from ._session import Session
from ._tools import Tool

__all__ = ["execute_python"]


def execute_python(
    code: str,
    *,
    tools: Iterable[Tool | Callable[..., Any]] = (),
    timeout: float | None = 30,
    sandbox: bool = True,
    limits: Limits | None = None,
    **session_options: Any,
) -> Any:
    """Run ``code`` in a fresh session, close it, and return the final expression's value.

    Args:
        code: Python source; the value of its last expression statement is returned.
        tools: host tools the code may call.
        timeout: seconds before the code is stopped; None for none.
        sandbox: run inside the OS sandbox (``False`` is an explicit, unsafe choice).
        limits: resource limits (None: the safe defaults).
        **session_options: any other :class:`securepy.Session` option.

    Returns:
        The value of the code's final expression (None if there is none).

    Raises:
        securepy.errors.SecurePyError: as :meth:`securepy.Session.execute` raises.

    Example:
        >>> import securepy
        >>> securepy.execute_python("sum(range(10))", sandbox=False)
        45
    """
    with Session(tools, sandbox=sandbox, limits=limits, timeout=timeout,
                 **session_options) as session:
        return session.execute(code).value
