"""Session and AsyncSession: a persistent sandboxed interpreter that can call host tools.

The twins hold a session's lifecycle and guards only; one base (``_session_base.py``) holds
everything that does not wait. A turn (one execute) is decided by ``_turn.Turn`` and driven
by ``_sync_turn`` or ``_async_turn``.
"""

from __future__ import annotations

import asyncio
import os
import time
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ._async_turn import AsyncTurnLoop
from ._child import Child, kill_quietly, start_child, start_child_in_thread
from ._config import (
    MAX_CODE_LENGTH,
    USE_SESSION_DEFAULT,
    OnOutput,
    SessionConfig,
    UseSessionDefault,
    make_config,
)
from ._execution import Execution
from ._files import AsyncFiles, Files
from ._launchers import Launcher
from ._limits import Limits
from ._mounts import Mount
from ._session_base import SessionBase
from ._sync_turn import SyncTurnLoop
from ._tools import Tool
from ._tracing import end_execute_span
from ._turn import Turn
from ._worker import protocol
from .errors import (
    ProtocolError,
    SecurePyError,
    SessionClosedError,
)

__all__ = ["AsyncSession", "Session"]


@typing.final
class Session(SessionBase):
    """A persistent Python interpreter in a sandboxed child process, with host tools.

    State (variables, imports) persists between executes. The child starts when the session is
    created; an exception in the code leaves the session usable; a crash, a protocol breach or
    a timeout that needed a kill restarts the child with a fresh namespace.

    Args:
        tools: host tools the code can call: securepy.Tool objects or plain typed functions.
        sandbox: run inside the OS sandbox (bubblewrap). ``False`` is an explicit, unsafe
            choice: the code runs as a plain child process with the limits only.
        limits: resource limits; None means the safe defaults (``securepy.Limits()``).
        timeout: default seconds per execute (wall clock); None for none.
        python: interpreter for the child (absolute path); default: the host's.
        max_frame_bytes: largest frame accepted from the child (default 64 MiB).
        max_output_bytes: stdout+stderr kept per execute; default ``limits.output_bytes``.
        max_tool_calls: tool calls allowed per execute (None: no limit).
        max_executions: executes allowed over the session's life (None: no limit).
        max_code_length: longest code accepted, in characters (default 100,000; None: no
            limit).
        pre_execute_hook: called with the code before each execute; returning False refuses
            it, and so does raising (a PolicyError whose ``__cause__`` is the hook's exception).
        sanitize_errors: strip host paths, user names, pids and addresses from error text.
        audit_log: path of a JSON-lines audit log to append to.
        audit: a callable that receives each audit event as a dict.
        verbose: log this session's activity to stderr.
        launcher: advanced: a custom launcher (tests).
        preload: modules the child imports before it reports ready (e.g. ``["numpy",
            "pandas"]``), so a pool's spare sessions start with them loaded. A module that
            fails to import makes the start fail with SandboxUnavailableError.
        wall: "auto" (bubblewrap's namespaces where they can be made, else the Landlock wall,
            logged as a warning and reported by ``session.wall``), "namespaces" or
            "landlock" to pin one: a pinned wall that cannot stand here is a
            SandboxUnavailableError naming why.
        trace_content: with OpenTelemetry tracing on, put the code and the tool arguments on
            the spans too (by default only their sizes and the code's hash).
        mounts: host directories to expose, each a :class:`securepy.Mount` (read-only unless
            ``writable=True``). Needs the sandbox.
        template: fork the session from the process's shared template where one can run
            (the namespaces wall on a host that allows templates): a few milliseconds instead
            of a bubblewrap start. The template starts with the first such session and stops
            at interpreter exit (see :meth:`shared_templates`). Its sessions share the str
            hash secret and the address-space layout it started with; ``False`` (or
            ``SECUREPY_SHARED_TEMPLATE=0`` in the environment, for the whole process) starts
            the session with bubblewrap, with both fresh. A pool's sessions fork from the
            pool's own template instead.

    Raises:
        securepy.errors.SandboxUnavailableError: the sandbox cannot start on this host.

    Example:
        >>> import securepy
        >>> with securepy.Session(sandbox=False) as session:
        ...     session.execute("x = 20")
        ...     session.execute("x + 22").value
        42
    """


    _POOL_NAME = "SessionPool"

    def __init__(
        self,
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
    ) -> None:
        config = make_config(
            tools, sandbox=sandbox, limits=limits, timeout=timeout, python=python,
            max_frame_bytes=max_frame_bytes, max_output_bytes=max_output_bytes,
            max_tool_calls=max_tool_calls, max_executions=max_executions,
            max_code_length=max_code_length, pre_execute_hook=pre_execute_hook,
            sanitize_errors=sanitize_errors, audit_log=audit_log, audit=audit,
            verbose=verbose, launcher=launcher, preload=preload, wall=wall,
            trace_content=trace_content, mounts=mounts, template=template,
        )
        self._init_from_config(config)

    def _init_from_config(self, config: SessionConfig, child: Child | None = None) -> None:
        super().__init__(config, child)
        try:
            self._adopt_child(child or start_child(config), None)
        except BaseException:
            self._close()
            raise

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def files(self) -> Files:
        """The session's workspace: ``write(path, data)``, ``read(path)``, ``list(path)``,
        ``remove(path)`` (see :class:`securepy._files.Files`)."""
        return Files(self)

    def execute(
        self,
        code: str,
        *,
        timeout: float | UseSessionDefault | None = USE_SESSION_DEFAULT,
        on_output: OnOutput | None = None,
        max_tool_calls: int | UseSessionDefault | None = USE_SESSION_DEFAULT,
        validate: bool = True,
    ) -> Execution:
        """Run ``code`` in the session and return what it produced.

        Args:
            code: Python source. A final expression statement's value becomes
                ``Execution.value``.
            timeout: seconds for this execute (default: the session's); None for none.
            on_output: called as ``on_output(stream, text)`` while the code prints, with
                stream ``"stdout"`` or ``"stderr"``.
            max_tool_calls: tool calls allowed in this execute (default: the session's).
            validate: check the syntax on the host first (``False`` leaves it to the child).

        Returns:
            The :class:`securepy.Execution`.

        Raises:
            securepy.errors.ExecutionError: the code raised; the session keeps its state.
            securepy.errors.ExecutionTimeout: the code ran past ``timeout``.
            securepy.errors.CodeValidationError: the code does not parse.
            securepy.errors.ResourceLimitError: the code hit a resource limit.
            securepy.errors.PolicyError: a session guard refused the execute.
            securepy.errors.SessionBusyError: another execute is running on this session.
            securepy.errors.SessionClosedError: the session is closed.
            securepy.errors.ProtocolError: the child broke the protocol and was restarted.
        """
        self._check_before_execute(code, validate, on_output)
        self._acquire_for_execute()
        try:
            if self._closed:  # closed while this call waited for the checks above
                raise SessionClosedError("the session is closed; create a new one")
            if self._child is None:
                self._adopt_child(start_child(self._config), "the previous child was stopped")
            child = self._child
            assert child is not None
            turn, message, started = self._begin_turn(code, timeout, on_output, max_tool_calls)
            try:
                execution = self._run_turn(child, turn, message, started)
            except BaseException as exc:
                end_execute_span(turn.span, error=exc, duration=time.monotonic() - started,
                                 refused_calls=turn.refused_calls)
                raise
            end_execute_span(turn.span, execution=execution, duration=execution.duration,
                             refused_calls=turn.refused_calls)
            return execution
        finally:
            self._running = None
            self._release_after_execute()

    def _run_turn(self, child: Child, turn: Turn, message: dict[str, Any], started: float
                  ) -> Execution:
        loop = self._running = SyncTurnLoop(child, turn, self.id, self._tool_executor,
                                            tool_loop=self._tool_loop)
        try:
            finish = loop.run(message)
        except ProtocolError as exc:
            error = self._broken_turn(exc, turn)
            self._restart(str(error))
            self._record_error(error)
            raise error from None
        except BaseException:
            # Ctrl-C (or another BaseException) on the host: the turn is abandoned half-way,
            # so the child (still running it) is replaced before the exception goes on.
            self._restart("the execute was abandoned by an exception on the host")
            raise
        if finish.restart is not None or child.channel.broken:
            finish, reason = self._restart_reason(finish, child.channel.broken, child, turn)
            if reason is not None:
                self._restart(reason)
        return self._outcome(finish, turn, started)

    def interrupt(self) -> bool:
        """Stop the code this session is running now (call it from another thread).

        The code gets ``KeyboardInterrupt``, and the running ``execute`` raises
        :class:`securepy.errors.ExecutionError` (type ``KeyboardInterrupt``). Code that does not
        stop within a second (it ignores SIGINT, or is stuck in C) has its child killed and a
        fresh one started. A host tool already running is not stopped (a thread cannot be);
        its result is dropped. Returns when the execute has ended.

        Returns:
            True when the session kept its state (the code stopped, or nothing was running);
            False when the child had to be killed and restarted (the state is lost).
        """
        loop = self._running
        return True if loop is None else loop.interrupt()

    def _restart(self, reason: str) -> None:
        self._drop_child()
        if self._closed:
            return
        try:
            self._adopt_child(start_child(self._config), reason)
        except SecurePyError:
            self._child = None  # the next execute tries again, and reports why it cannot

    def restart(self) -> None:
        """Replace the child with a fresh one: all state is lost, tools stay.

        Raises:
            securepy.errors.SessionBusyError: an execute is running (restart after it returns).
            securepy.errors.SessionClosedError: the session is closed.
            securepy.errors.SandboxUnavailableError: the new child cannot start.
        """
        self._acquire_for_restart()
        try:
            self._drop_child()
            self._adopt_child(start_child(self._config), "restart() was called")
        finally:
            self._busy.release()

    def close(self) -> None:
        """Stop the child and release everything. Idempotent. An execute running in another
        thread stops at once with SessionClosedError."""
        self._close()


@typing.final
class AsyncSession(SessionBase):
    """Async counterpart of :class:`Session`; same arguments.

    The child starts on first use or on ``async with``. Async host tools are awaited on the
    caller's event loop; sync tools run in a bounded thread pool, off the loop. Cancelling an
    awaiting ``execute`` interrupts the code (and kills the child if it does not stop); the
    session stays usable.
    """

    _POOL_NAME = "AsyncSessionPool"

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]] | Tool | Callable[..., Any] = (),
        **options: Any,
    ) -> None:
        # The options are Session's, declared and documented once there.
        self._init_from_config(make_config(tools, **options))

    def _init_from_config(self, config: SessionConfig, child: Child | None = None) -> None:
        super().__init__(config, child)
        if child is not None:
            self._adopt_child(child, None)

    async def __aenter__(self) -> AsyncSession:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def files(self) -> AsyncFiles:
        """The session's workspace, as coroutines: ``await session.files.read(path)``."""
        return AsyncFiles(self)

    async def start(self) -> None:
        """Start the child now rather than on first use.

        Raises:
            securepy.errors.SandboxUnavailableError: the sandbox cannot start on this host.
        """
        self._check_open()
        if self._child is None:
            child = await start_child_in_thread(self._config)
            if self._closed:
                kill_quietly(child)
                raise SessionClosedError("the session was closed while it started")
            self._adopt_child(child, None if self._executions == 0 else
                              "the previous child was stopped")

    async def execute(
        self,
        code: str,
        *,
        timeout: float | UseSessionDefault | None = USE_SESSION_DEFAULT,
        on_output: OnOutput | None = None,
        max_tool_calls: int | UseSessionDefault | None = USE_SESSION_DEFAULT,
        validate: bool = True,
    ) -> Execution:
        """Async counterpart of :meth:`Session.execute`; same arguments."""
        self._check_before_execute(code, validate, on_output)
        self._acquire_for_execute()
        try:
            await self.start()
            child = self._child
            assert child is not None
            turn, message, started = self._begin_turn(code, timeout, on_output, max_tool_calls)
            try:
                execution = await self._run_turn(child, turn, message, started)
            except BaseException as exc:
                end_execute_span(turn.span, error=exc, duration=time.monotonic() - started,
                                 refused_calls=turn.refused_calls)
                raise
            end_execute_span(turn.span, execution=execution, duration=execution.duration,
                             refused_calls=turn.refused_calls)
            return execution
        finally:
            self._running = None
            self._release_after_execute()

    async def _run_turn(self, child: Child, turn: Turn, message: dict[str, Any],
                        started: float) -> Execution:
        loop = self._running = AsyncTurnLoop(child, turn, self.id, self._tool_executor)
        try:
            finish = await loop.run(message)
        except ProtocolError as exc:
            error = self._broken_turn(exc, turn)
            await self._restart(str(error))
            self._record_error(error)
            raise error from None
        except asyncio.CancelledError:
            # The loop has interrupted the code (or it had finished) before this.
            after = loop.after_cancel
            if after is not None and after.restart is not None:
                await asyncio.shield(self._restart(after.restart))
            self._emit("execute_timeout", timeout=None, cancelled=True,
                       state_kept=after is None or after.restart is None)
            raise
        except BaseException:
            # A BaseException on the host: the turn is abandoned half-way, so the child
            # (still running it) is replaced before the exception goes on.
            await self._restart("the execute was abandoned by an exception on the host")
            raise
        broken = loop.broken
        if finish.restart is not None or broken:
            finish, reason = self._restart_reason(finish, broken, child, turn)
            if reason is not None:
                await self._restart(reason)
        return self._outcome(finish, turn, started)

    async def interrupt(self) -> bool:
        """Async counterpart of :meth:`Session.interrupt` (call it from another task on the
        same event loop); the same outcome."""
        loop = self._running
        return True if loop is None else await loop.interrupt()

    async def _restart(self, reason: str) -> None:
        self._drop_child()
        if self._closed:
            return
        try:
            child = await start_child_in_thread(self._config)
        except SecurePyError:
            return  # the next execute tries again, and reports why it cannot
        self._adopt_child(child, reason)

    async def restart(self) -> None:
        """Async counterpart of :meth:`Session.restart`; the same errors."""
        self._acquire_for_restart()
        try:
            self._drop_child()
            child = await start_child_in_thread(self._config)
            if self._closed:
                kill_quietly(child)
                raise SessionClosedError("the session was closed while it restarted")
            self._adopt_child(child, "restart() was called")
        finally:
            self._busy.release()

    async def close(self) -> None:
        """Async counterpart of :meth:`Session.close`."""
        self._close()
