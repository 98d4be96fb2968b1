"""The sandbox as a model's tool, before any framework's idiom: :class:`SandboxRunner` runs code
for a model and turns every result and failure into text (:class:`RunOutcome`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import typing
import weakref
from collections.abc import Iterable
from typing import Any

from ._config import OnOutput, make_config
from ._execution import DEFAULT_TEXT_CHARS
from ._model_images import ModelImage, model_images
from ._model_text import code_problem, describe_error, describe_sandbox
from ._native import Convert, convert_tools
from ._pool import AsyncSessionPool, SessionPool
from ._session import AsyncSession, Session
from ._tools import Tool, collect_tools
from .errors import SandboxUnavailableError, SecurePyError

__all__ = ["AnySession", "RunOutcome", "SandboxOwnerMixin", "SandboxRunner", "SandboxToolMixin"]


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
    images: tuple[ModelImage, ...] = ()


AnySession = Session | AsyncSession | SessionPool | AsyncSessionPool


class SandboxRunner:
    """Runs model-written code for an adapter and renders the outcome for the model.

    Args:
        tools: securepy Tools, plain typed functions, and (with ``convert``) native tools.
        session: a Session or AsyncSession to use; it is left open.
        pool: a SessionPool or AsyncSessionPool to use instead; it is left open.
        name: the tool's name as the model sees it.
        description: the tool's description; default: :data:`DEFAULT_DESCRIPTION` plus a
            stub of each host tool (:func:`describe_sandbox`).
        timeout: seconds per run; None for none.
        max_output_chars: bound on the text the model sees.
        convert: the adapter's converter: returns a securepy Tool for one of its framework's
            native tools, None for anything else (kept as it is).
        framework: the framework's name, for the error naming what ``tools=`` accepts.
        **session_options: options for the session the runner creates when given neither
            ``session`` nor ``pool`` (see :class:`securepy.Session`). ``sanitize_errors``
            defaults to True here: the errors are read by a model.

    Raises:
        TypeError: both ``session`` and ``pool`` given, an unknown session option, or an item
            of ``tools`` that is none of the accepted kinds.
        ValueError: ``max_output_chars`` is not positive.
    """

    def __init__(
        self,
        *,
        tools: Iterable[Any] = (),
        session: Session | AsyncSession | None = None,
        pool: SessionPool | AsyncSessionPool | None = None,
        name: str = "run_python",
        description: str | None = None,
        timeout: float | None = 30,
        max_output_chars: int = DEFAULT_TEXT_CHARS,
        convert: Convert | None = None,
        framework: str | None = None,
        **session_options: Any,
    ) -> None:
        if session is not None and pool is not None:
            raise TypeError("pass session= or pool=, not both")
        if not isinstance(max_output_chars, int) or max_output_chars <= 0:
            raise ValueError(
                f"max_output_chars must be a positive integer, got {max_output_chars!r}"
            )
        owned_tools = collect_tools(convert_tools(tools, convert, framework))
        if (session is not None or pool is not None) and session_options:
            raise TypeError(
                f"session options ({', '.join(sorted(session_options))}) apply only to a "
                "session the tool creates; set them on the session or pool you pass instead"
            )
        if session is not None or pool is not None:
            target: Any = session if session is not None else pool
            if owned_tools:
                raise TypeError(
                    "tools= cannot be added to a session or pool you pass; give "
                    "the tools to that session or pool"
                )
            self.tools: dict[str, Tool] = dict(target.tools) if hasattr(target, "tools") else {}
        else:
            session_options.setdefault("sanitize_errors", True)
            # Checks the options now, so a typo fails here rather than at the first run.
            make_config(list(owned_tools.values()), timeout=timeout, **session_options)
            self.tools = owned_tools
        self.name = name
        self.description = (
            description if description is not None else describe_sandbox(self.tools.values())
        )
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self._target: AnySession | None = session if session is not None else pool
        self._session_options = session_options
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def session(self) -> AnySession | None:
        """The session or pool in use (None until an owned session is first needed)."""
        return self._target

    def run(self, code: str, *, on_output: OnOutput | None = None) -> RunOutcome:
        """Run ``code`` and return the outcome; never raises for a failure of the code.

        Args:
            code: the Python source.
            on_output: called as ``on_output(stream, text)`` while the code prints.

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
                execution = target.execute(code, timeout=self.timeout, on_output=on_output)
            except SandboxUnavailableError:
                raise  # a setup problem for the developer, not something the model can fix
            except SecurePyError as exc:
                return self._failed(exc)
        return self._succeeded(execution)

    async def arun(self, code: str, *, on_output: OnOutput | None = None) -> RunOutcome:
        """Async counterpart of :meth:`run`; never blocks the event loop.

        ``on_output`` may also be a coroutine function (a framework's async callbacks): each
        coroutine it returns runs on this event loop, wherever the output arrives from, and
        all have finished when ``arun`` returns.
        """
        if on_output is None:
            return await self._arun(code, None)
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[Any]] = []

        def deliver(stream: str, text: str) -> None:
            # Called on this loop (an async session) or on a worker thread (a sync one).
            result = on_output(stream, text)
            if not asyncio.iscoroutine(result):
                return
            if _running_loop() is loop:
                pending.append(asyncio.ensure_future(result))
            else:
                future = asyncio.run_coroutine_threadsafe(result, loop)
                pending.append(asyncio.wrap_future(future, loop=loop))

        try:
            return await self._arun(code, deliver)
        finally:
            await asyncio.gather(*pending, return_exceptions=True)

    def run_arguments(self, arguments: Any, *, on_output: OnOutput | None = None) -> RunOutcome:
        """Run the code of the arguments a model sent, decoded: ``{"code": ...}``. Malformed
        arguments give an error outcome (:func:`code_problem`'s text, telling the model what
        to send); they never raise.

        Raises:
            securepy.errors.SandboxUnavailableError: as :meth:`run`.
        """
        code = self._code_of(arguments)
        return code if isinstance(code, RunOutcome) else self.run(code, on_output=on_output)

    async def arun_arguments(
        self, arguments: Any, *, on_output: OnOutput | None = None
    ) -> RunOutcome:
        """Async counterpart of :meth:`run_arguments`."""
        code = self._code_of(arguments)
        if isinstance(code, RunOutcome):
            return code
        return await self.arun(code, on_output=on_output)

    async def _arun(self, code: str, on_output: OnOutput | None) -> RunOutcome:
        target = self._target
        if isinstance(target, AsyncSession | AsyncSessionPool):
            try:
                execution = await target.execute(code, timeout=self.timeout, on_output=on_output)
            except SandboxUnavailableError:
                raise
            except SecurePyError as exc:
                return self._failed(exc)
            return self._succeeded(execution)
        return await asyncio.to_thread(self.run, code, on_output=on_output)

    def _code_of(self, arguments: Any) -> str | RunOutcome:
        problem = code_problem(self.name, arguments)
        return str(arguments["code"]) if problem is None else RunOutcome(problem, True)

    def close(self) -> None:
        """Close the session this runner created (a session or pool passed in stays open)."""
        if self._finalizer is not None:
            self._finalizer()

    def _sync_target(self) -> Session | SessionPool:
        if self._target is None:
            session = Session(
                list(self.tools.values()), timeout=self.timeout, **self._session_options
            )
            self._target = session
            self._finalizer = weakref.finalize(self, session.close)
        if isinstance(self._target, AsyncSession | AsyncSessionPool):
            raise TypeError(
                "this tool wraps an async session or pool: call it asynchronously "
                "(ainvoke / acall / ahandle)"
            )
        return self._target

    def _succeeded(self, execution: Any) -> RunOutcome:
        text = execution.render_text(self.max_output_chars)
        outputs = getattr(execution, "outputs", ())
        if not outputs:  # the common case costs nothing more
            return RunOutcome(text, False, execution)
        images, note = model_images(outputs)
        # The note goes after the bounded text, so the cut never hides it; it is bounded by
        # securepy's MAX_OUTPUTS outputs per execute.
        return RunOutcome(text + "\n" + note if note else text, False, execution, images=images)

    def _failed(self, error: SecurePyError) -> RunOutcome:
        return RunOutcome(describe_error(error, self.max_output_chars), True, error=error)


class SandboxOwnerMixin:
    """What a sandbox tool owns, over its ``_runner``: ``tools``, ``session``, ``close()`` and
    use as a context manager (for a tool type that already has ``name`` and ``description``
    fields of its own, as LangChain's does)."""

    _runner: SandboxRunner

    @property
    def tools(self) -> dict[str, Tool]:
        """The host tools callable from the code, by name."""
        return dict(self._runner.tools)

    @property
    def session(self) -> AnySession | None:
        """The session or pool in use (None until an owned session is first needed)."""
        return self._runner.session

    def close(self) -> None:
        """Close the session this tool created; a session or pool passed in stays open."""
        self._runner.close()

    def __enter__(self) -> typing.Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SandboxToolMixin(SandboxOwnerMixin):
    """The face every adapter's ``SecurePyTool`` shares, over its ``_runner``: ``name``,
    ``description``, ``tools``, ``session``, ``close()`` and use as a context manager."""

    @property
    def name(self) -> str:
        """The tool's name as the model sees it."""
        return self._runner.name

    @property
    def description(self) -> str:
        """The description the model sees, with a stub of each host tool."""
        return self._runner.description

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.SecurePyTool {self.name!r} tools={sorted(self.tools)}>"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
