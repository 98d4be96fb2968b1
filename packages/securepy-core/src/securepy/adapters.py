"""What every framework adapter shares: the sandbox as a "run Python" tool.

An adapter (securepy-langchain, -openai, -anthropic, -llamaindex) converts its framework's tools
into :class:`securepy.Tool` objects, builds one :class:`SandboxRunner`, and wraps it in the
framework's own tool type. The runner owns a session it creates (lazily, on first use) or uses a
session or pool the caller passes, and turns every result and every failure into text a model
can read, so an agent loop never breaks on an error in the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import typing
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from ._config import make_config
from ._execution import DEFAULT_TEXT_CHARS, truncate_middle
from ._pool import AsyncSessionPool, SessionPool
from ._session import AsyncSession, Session
from ._tools import Tool, collect_tools
from .errors import ExecutionError, ExecutionTimeout, SandboxUnavailableError, SecurePyError

__all__ = [
    "DEFAULT_DESCRIPTION",
    "DEFAULT_TEXT_CHARS",
    "RunOutcome",
    "SandboxRunner",
    "describe_error",
]

DEFAULT_DESCRIPTION = (
    "Run Python code in a persistent, sandboxed CPython session: variables and imports are "
    "kept between calls, like a notebook. The sandbox has no network access and cannot read "
    "host files. Anything printed is returned, followed by the value of the last expression."
)


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a model sees after one run.

    Attributes:
        text: the output and value (or the error), bounded to the runner's max_output_chars.
        is_error: True when the code raised, timed out, was refused or the session failed.
        execution: the :class:`securepy.Execution` when the run succeeded.
        error: the :class:`securepy.errors.SecurePyError` when it did not.
    """

    text: str
    is_error: bool
    execution: Any = None
    error: SecurePyError | None = None


AnySession = Session | AsyncSession | SessionPool | AsyncSessionPool


class SandboxRunner:
    """Runs model-written code for an adapter and renders the outcome for the model.

    Args:
        tools: securepy Tools or plain typed functions (already converted by the adapter).
        session: a Session or AsyncSession to use; it is left open.
        pool: a SessionPool or AsyncSessionPool to use instead; it is left open.
        name: the tool's name as the model sees it.
        description: the tool's description; default: :data:`DEFAULT_DESCRIPTION` plus the
            list of host tools.
        timeout: seconds per run; None for none.
        max_output_chars: bound on the text the model sees.
        **session_options: options for the session the runner creates when given neither
            ``session`` nor ``pool`` (see :class:`securepy.Session`).

    Raises:
        TypeError: both ``session`` and ``pool`` given, or an unknown session option.
        ValueError: ``max_output_chars`` is not positive.
    """

    def __init__(
        self,
        *,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        session: Session | AsyncSession | None = None,
        pool: SessionPool | AsyncSessionPool | None = None,
        name: str = "run_python",
        description: str | None = None,
        timeout: float | None = 30,
        max_output_chars: int = DEFAULT_TEXT_CHARS,
        **session_options: Any,
    ) -> None:
        if session is not None and pool is not None:
            raise TypeError("pass session= or pool=, not both")
        if not isinstance(max_output_chars, int) or max_output_chars <= 0:
            raise ValueError(f"max_output_chars must be a positive integer, got "
                             f"{max_output_chars!r}")
        owned_tools = collect_tools(list(tools))
        if (session is not None or pool is not None) and session_options:
            raise TypeError(
                f"session options ({', '.join(sorted(session_options))}) apply only to a "
                "session the tool creates; set them on the session or pool you pass instead")
        if session is not None or pool is not None:
            target: Any = session if session is not None else pool
            if owned_tools:
                raise TypeError("tools= cannot be added to a session or pool you pass; give "
                                "the tools to that session or pool")
            self.tools = dict(target.tools) if hasattr(target, "tools") else {}
        else:
            # Checks the options now, so a typo fails here rather than at the first run.
            make_config(list(owned_tools.values()), timeout=timeout, **session_options)
            self.tools = owned_tools
        self.name = name
        self.description = description if description is not None else describe_sandbox(
            self.tools.values())
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self._target: AnySession | None = session if session is not None else pool
        self._owns_target = self._target is None
        self._session_options = session_options
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def session(self) -> AnySession | None:
        """The session or pool in use (None until an owned session is first needed)."""
        return self._target

    def run(self, code: str) -> RunOutcome:
        """Run ``code`` and return the outcome; never raises for a failure of the code.

        Raises:
            securepy.errors.SandboxUnavailableError: the sandbox cannot start on this host (a
                setup problem for the developer, so it is not shown to the model).
        """
        with self._lock:
            target = self._sync_target()
        # A session runs one execute at a time: runs through this tool (several tool calls
        # of one model turn, say) wait their turn. A pool serves them concurrently.
        guard = self._lock if isinstance(target, Session) else contextlib.nullcontext()
        with guard:
            try:
                execution = target.execute(code, timeout=self.timeout)
            except SandboxUnavailableError:
                raise  # a setup problem for the developer, not something the model can fix
            except SecurePyError as exc:
                return self._failed(exc)
        return self._succeeded(execution)

    async def arun(self, code: str) -> RunOutcome:
        """Async counterpart of :meth:`run`; never blocks the event loop."""
        target = self._target
        if isinstance(target, AsyncSession | AsyncSessionPool):
            try:
                execution = await target.execute(code, timeout=self.timeout)
            except SandboxUnavailableError:
                raise
            except SecurePyError as exc:
                return self._failed(exc)
            return self._succeeded(execution)
        return await asyncio.to_thread(self.run, code)

    def close(self) -> None:
        """Close the session this runner created (a session or pool passed in stays open)."""
        if self._finalizer is not None:
            self._finalizer()

    def _sync_target(self) -> Session | SessionPool:
        if self._target is None:
            session = Session(list(self.tools.values()), timeout=self.timeout,
                              **self._session_options)
            self._target = session
            self._finalizer = weakref.finalize(self, session.close)
        if isinstance(self._target, AsyncSession | AsyncSessionPool):
            raise TypeError("this tool wraps an async session or pool: call it asynchronously "
                            "(ainvoke / acall / ahandle)")
        return self._target

    def _succeeded(self, execution: Any) -> RunOutcome:
        return RunOutcome(execution.render_text(self.max_output_chars), False, execution)

    def _failed(self, error: SecurePyError) -> RunOutcome:
        return RunOutcome(describe_error(error, self.max_output_chars), True, error=error)


def describe_sandbox(tools: Iterable[Tool]) -> str:
    """:data:`DEFAULT_DESCRIPTION`, plus each host tool as a Python signature."""
    listed = [f"- {tool.summary()}" for tool in tools]
    if not listed:
        return DEFAULT_DESCRIPTION
    return (
        DEFAULT_DESCRIPTION
        + "\nThese host functions are defined inside the session; call them like normal "
        "Python functions (they block until the host answers; a failure raises ToolError):\n"
        + "\n".join(listed)
    )


def describe_error(error: SecurePyError, max_chars: int = DEFAULT_TEXT_CHARS) -> str:
    """A failure as text for a model: the output so far, then what went wrong."""
    parts = []
    stdout, stderr = getattr(error, "stdout", ""), getattr(error, "stderr", "")
    if stdout:
        parts.append(stdout.rstrip("\n"))
    if stderr:
        parts.append("[stderr]\n" + stderr.rstrip("\n"))
    if isinstance(error, ExecutionError):
        parts.append(error.traceback.rstrip("\n") or str(error))
    elif isinstance(error, ExecutionTimeout):
        parts.append(f"Error: {error}")
    else:
        parts.append(f"Error ({type(error).__name__}): {error}")
    return truncate_middle("\n".join(parts), max_chars)
