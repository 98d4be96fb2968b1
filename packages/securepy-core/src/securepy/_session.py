"""Session and AsyncSession: a persistent sandboxed interpreter that can call host tools.

The twins hold a session's lifecycle and guards only; one base holds everything that does not
wait. A turn (one execute) is decided by ``_turn.Turn`` and driven by ``_sync_turn`` or
``_async_turn``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import threading
import time
import typing
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from ._async_turn import AsyncTurnLoop
from ._audit import Auditor, open_auditor
from ._child import Child, kill_quietly, start_child, start_child_in_thread
from ._config import (
    USE_SESSION_DEFAULT,
    OnOutput,
    SessionConfig,
    UseSessionDefault,
    check_timeout,
    make_config,
)
from ._execution import Execution
from ._launchers import Launcher
from ._limits import Limits
from ._logging import attach_verbose_handler, logger, warn_unsandboxed
from ._sanitize import sanitize_text
from ._sync_turn import SyncTurnLoop
from ._tool_loop import ToolLoop
from ._tools import Tool
from ._turn import Finish, Turn
from ._validate import check_syntax
from ._worker import protocol
from .errors import (
    ExecutionTimeout,
    PolicyError,
    ProtocolError,
    ResourceLimitError,
    SecurePyError,
    SessionBusyError,
    SessionClosedError,
)

__all__ = ["AsyncSession", "Session"]

_TOOL_THREADS = 8


class _SessionBase:
    """What both twins share: options, guards, the audit trail, the child's lifecycle, and
    every step of an execute that does not wait."""

    _POOL_NAME: typing.ClassVar[str]

    def __init__(self, config: SessionConfig, child: Child | None = None) -> None:
        try:
            self._init_base(config)
        except BaseException:
            kill_quietly(child)  # a child started for this session must not outlive the failure
            raise

    def _init_base(self, config: SessionConfig) -> None:
        self._config = config
        self.id = uuid.uuid4().hex[:12]
        self._closed = False
        self._executions = 0
        self._child: Child | None = None
        self._busy = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._tool_loop = ToolLoop(self.id)  # a sync Session's async tools; started on use
        self._auditor: Auditor | None = open_auditor(self.id, config.audit_log, config.audit)
        self._handler: logging.Handler | None = None
        self._finalizer = weakref.finalize(self, kill_quietly, None)
        if config.verbose:
            self._handler = attach_verbose_handler(self.id)

    @classmethod
    def _from_config(cls, config: SessionConfig, child: Child | None = None) -> typing.Self:
        """A session from a checked config (pools), adopting ``child`` if one is given."""
        session = cls.__new__(cls)
        session._init_from_config(config, child)
        return session

    def _init_from_config(self, config: SessionConfig, child: Child | None = None) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<securepy.{type(self).__name__} {self.id} {state} sandbox={self._config.sandbox}>"

    @property
    def tools(self) -> dict[str, Tool]:
        """The session's tools by name (a copy)."""
        return dict(self._config.tools)

    @property
    def sandboxed(self) -> bool:
        """True when the code runs inside the OS sandbox."""
        return self._config.sandbox

    @property
    def executions(self) -> int:
        """Executes started over the session's life (what ``max_executions`` counts)."""
        return self._executions

    def is_alive(self) -> bool:
        """True if the session is open and its child process is running."""
        child = self._child
        return not self._closed and child is not None and child.process.poll() is None

    # -- the child -------------------------------------------------------------------------

    def _adopt_child(self, child: Child, reason: str | None) -> None:
        self._child = child
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, kill_quietly, child)
        usage = {"pid": child.process.pid, "sandbox": child.process.sandboxed}
        if reason is None:
            self._emit("session_start", limits=self._config.limits.to_wire(), **usage)
            logger.info("session %s started (pid %d, sandbox %s)", self.id, child.process.pid,
                        "on" if child.process.sandboxed else "off",
                        extra={"session_id": self.id})
        else:
            self._emit("session_restart", reason=reason, **usage)
            logger.info("session %s restarted (pid %d): %s", self.id, child.process.pid,
                        reason, extra={"session_id": self.id})
        if not child.process.sandboxed and reason is None:
            warn_unsandboxed(self.id)

    def _drop_child(self) -> None:
        child, self._child = self._child, None
        self._finalizer.detach()
        kill_quietly(child)

    def _tool_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                _TOOL_THREADS, thread_name_prefix=f"securepy-tools-{self.id}")
        return self._executor

    # -- guards ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError("the session is closed; create a new one")

    def _check_before_execute(self, code: str, validate: bool) -> None:
        """The guards that need no round trip to the child."""
        self._check_open()
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        config = self._config
        if config.max_code_length is not None and len(code) > config.max_code_length:
            self._refuse(f"the code is {len(code)} characters long, over max_code_length="
                         f"{config.max_code_length}")
        if config.max_executions is not None and self._executions >= config.max_executions:
            self._refuse(f"this session already ran max_executions={config.max_executions} "
                         "executions; start a new session")
        if config.pre_execute_hook is not None and config.pre_execute_hook(code) is False:
            self._refuse("the pre_execute_hook refused this code")
        if validate:
            check_syntax(code)

    def _acquire_for_execute(self) -> None:
        """Hold the session for one execute (then :meth:`_release_after_execute`)."""
        if not self._busy.acquire(blocking=False):
            raise SessionBusyError(
                "the session is busy running another execute; a session runs one execute at a "
                f"time (use a {self._POOL_NAME} to run code concurrently)")

    def _release_after_execute(self) -> None:
        """End of an execute; a child left behind by close() goes now."""
        self._busy.release()
        if self._closed:
            self._drop_child()

    def _acquire_for_restart(self) -> None:
        self._check_open()
        if not self._busy.acquire(blocking=False):
            raise SessionBusyError("the session is busy running an execute; restart it after "
                                   "the execute returns")

    def _refuse(self, reason: str) -> typing.NoReturn:
        self._emit("policy_denied", what="execute", reason=reason)
        raise PolicyError(reason)

    # -- one execute -----------------------------------------------------------------------

    def _begin_turn(self, code: str, timeout: float | UseSessionDefault | None,
                    on_output: OnOutput | None, max_tool_calls: int | UseSessionDefault | None,
                    ) -> tuple[Turn, dict[str, Any], float]:
        """The turn, the ``execute`` message that starts it, and its start time."""
        config = self._config
        seconds = config.timeout if isinstance(timeout, UseSessionDefault) else (
            check_timeout(timeout))
        calls = config.max_tool_calls if isinstance(max_tool_calls, UseSessionDefault) else (
            max_tool_calls)
        started = time.monotonic()
        turn = Turn(
            config.tools,
            deadline=None if seconds is None else started + seconds,
            timeout=seconds,
            max_tool_calls=calls,
            max_output_bytes=config.max_output_bytes,
            on_output=on_output,
            emit=self._emit if self._auditor is not None else None,
            sanitize=sanitize_text if config.sanitize_errors else _unchanged,
        )
        self._executions += 1
        if self._auditor is not None:
            self._emit("execute_start", code=code, sha256=_sha256(code))
        message = {"kind": "execute", "code": code, "filename": f"<cell-{self._executions}>"}
        return turn, message, started

    def _restart_reason(self, finish: Finish, broken: bool, child: Child, turn: Turn
                        ) -> tuple[Finish, str | None]:
        """The outcome, and why the child must be replaced (None: it stays). ``broken``: a
        frame to the child was cut off part-way."""
        if finish.restart is not None:
            return finish, finish.restart
        # A cut frame (a send ran into the deadline) leaves the stream out of step, so the
        # child goes, and the state with it whatever the turn said. (Only if this child is
        # still the session's: a restart may already have replaced it.)
        if broken and self._child is child:
            return _state_lost(finish, turn), "a frame to the child was cut off"
        return finish, None

    def _outcome(self, finish: Finish, turn: Turn, started: float) -> Execution:
        """The Execution, or the turn's error raised (recorded first)."""
        if finish.error is not None:
            self._record_error(finish.error)
            raise finish.error
        duration = time.monotonic() - started
        execution = turn.build_execution(finish.value, duration=duration)
        if execution.truncated:
            self._emit("limit_exceeded", limit="output",
                       message=f"output over {self._config.max_output_bytes} bytes was cut")
        if self._auditor is not None:
            child = self._child
            usage = child.process.resource_usage() if child is not None else None
            self._emit("execute_complete", duration=duration,
                       stdout_bytes=len(execution.stdout.encode("utf-8", "surrogatepass")),
                       stderr_bytes=len(execution.stderr.encode("utf-8", "surrogatepass")),
                       **(usage or {}))
        if logger.isEnabledFor(logging.INFO):
            logger.info("session %s: execution finished in %.3f s", self.id, duration,
                        extra={"session_id": self.id})
        return execution

    def _broken_turn(self, exc: ProtocolError, turn: Turn) -> SecurePyError:
        """What a turn that broke means: the session was closed under it, or the child died
        (a resource limit if the exit status says so) or broke the protocol."""
        if self._closed:
            self._drop_child()
            return SessionClosedError("the session was closed while this execute ran")
        output = {"stdout": turn.stdout, "stderr": turn.stderr}
        child = self._child
        status = child.process.poll() if child is not None else None
        if child is not None and status is None:
            try:
                status = child.process.wait(0.5)
            except Exception:  # still running: a protocol breach, not a death
                status = None
        if child is not None and status is not None:
            limit = child.process.describe_exit(status)
            if limit is not None:
                return ResourceLimitError(
                    f"the code hit the {limit} limit and the child was stopped; the session "
                    "was restarted with a fresh namespace", limit=limit, state_kept=False,
                    **output)
            return ProtocolError(f"the child process died unexpectedly (exit status {status}); "
                                 "the session was restarted with a fresh namespace", **output)
        return ProtocolError(f"{exc}; the child was stopped and the session restarted with a "
                             "fresh namespace", **output)

    def _record_error(self, error: SecurePyError) -> None:
        if isinstance(error, ResourceLimitError):
            self._emit("limit_exceeded", limit=error.limit, message=str(error))
        elif isinstance(error, ExecutionTimeout):
            self._emit("execute_timeout", timeout=error.timeout, state_kept=error.state_kept)
        elif not isinstance(error, SessionClosedError):
            self._emit("execute_error", type=getattr(error, "type_name", type(error).__name__),
                       message=getattr(error, "message", str(error)))
        logger.info("session %s: execution failed: %s", self.id, type(error).__name__,
                    extra={"session_id": self.id})

    # -- closing ---------------------------------------------------------------------------

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        child = self._child
        if self._busy.locked() and child is not None:
            # An execute is reading the socket: killing the child wakes it (end of stream),
            # and it drops the child itself; closing the socket under it would not wake it.
            child.process.kill()
        else:
            self._drop_child()
        self._emit("session_close")
        logger.info("session %s closed", self.id, extra={"session_id": self.id})
        if self._auditor is not None:
            self._auditor.close()
        if self._handler is not None:
            logger.removeHandler(self._handler)
            self._handler = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._tool_loop.close()

    def _emit(self, event: str, **fields: Any) -> None:
        if self._auditor is not None:
            self._auditor.emit(event, fields)


@typing.final
class Session(_SessionBase):
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
        max_code_length: longest code accepted, in characters (None: no limit).
        pre_execute_hook: called with the code before each execute; returning False refuses it.
        sanitize_errors: strip host paths, user names, pids and addresses from error text.
        audit_log: path of a JSON-lines audit log to append to.
        audit: a callable that receives each audit event as a dict.
        verbose: log this session's activity to stderr.
        launcher: advanced: a custom launcher (tests).
        preload: modules the child imports before it reports ready (e.g. ``["numpy",
            "pandas"]``), so a pool's spare sessions start with them loaded. A module that
            fails to import makes the start fail with SandboxUnavailableError.

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
        max_code_length: int | None = None,
        pre_execute_hook: Callable[[str], Any] | None = None,
        sanitize_errors: bool = False,
        audit_log: str | os.PathLike[str] | None = None,
        audit: Callable[[dict[str, Any]], Any] | None = None,
        verbose: bool = False,
        launcher: Launcher | None = None,
        preload: Iterable[str] = (),
    ) -> None:
        config = make_config(
            tools, sandbox=sandbox, limits=limits, timeout=timeout, python=python,
            max_frame_bytes=max_frame_bytes, max_output_bytes=max_output_bytes,
            max_tool_calls=max_tool_calls, max_executions=max_executions,
            max_code_length=max_code_length, pre_execute_hook=pre_execute_hook,
            sanitize_errors=sanitize_errors, audit_log=audit_log, audit=audit,
            verbose=verbose, launcher=launcher, preload=preload,
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
        self._check_before_execute(code, validate)
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
                finish = SyncTurnLoop(child, turn, self.id, self._tool_executor,
                                      tool_loop=self._tool_loop).run(message)
            except ProtocolError as exc:
                error = self._broken_turn(exc, turn)
                self._restart(str(error))
                self._record_error(error)
                raise error from None
            except BaseException:
                # An exception from on_output, or Ctrl-C: the turn is abandoned half-way, so
                # the child (still running it) is replaced before the exception goes on.
                self._restart("the execute was abandoned by an exception on the host")
                raise
            if finish.restart is not None or child.channel.broken:
                finish, reason = self._restart_reason(finish, child.channel.broken, child, turn)
                if reason is not None:
                    self._restart(reason)
            return self._outcome(finish, turn, started)
        finally:
            self._release_after_execute()

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
class AsyncSession(_SessionBase):
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
        self._check_before_execute(code, validate)
        self._acquire_for_execute()
        try:
            await self.start()
            child = self._child
            assert child is not None
            turn, message, started = self._begin_turn(code, timeout, on_output, max_tool_calls)
            loop = AsyncTurnLoop(child, turn, self._tool_executor)
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
                # An exception from on_output: the turn is abandoned half-way, so the child
                # (still running it) is replaced before the exception goes on.
                await self._restart("the execute was abandoned by an exception on the host")
                raise
            broken = loop.broken
            if finish.restart is not None or broken:
                finish, reason = self._restart_reason(finish, broken, child, turn)
                if reason is not None:
                    await self._restart(reason)
            return self._outcome(finish, turn, started)
        finally:
            self._release_after_execute()

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


def _unchanged(text: str) -> str:
    return text


def _state_lost(finish: Finish, turn: Turn) -> Finish:
    """The same outcome, told as a restart: an interrupt that kept state no longer did."""
    error = finish.error
    if isinstance(error, ExecutionTimeout):
        return Finish(error=ExecutionTimeout(error.timeout, state_kept=False,
                                             stdout=turn.stdout, stderr=turn.stderr))
    return finish


def _sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()
