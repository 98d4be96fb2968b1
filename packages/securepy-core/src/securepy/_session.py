"""Session and AsyncSession: a persistent sandboxed interpreter that can call host tools."""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import inspect
import logging
import os
import queue
import threading
import time
import typing
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ._audit import Auditor, open_auditor
from ._channel import AsyncChannel, Channel, DeadlineExceeded
from ._child import Child, kill_quietly, start_child, start_child_in_thread
from ._config import DEFAULT, OnOutput, SessionConfig, _Default, check_timeout, make_config
from ._driver import CallTool, Finish, Reply, Turn, error_reply
from ._execution import Execution
from ._launchers import Launcher
from ._limits import Limits
from ._tools import Tool
from ._worker import protocol
from .errors import (
    CodeValidationError,
    ExecutionTimeout,
    PolicyError,
    ProtocolError,
    ResourceLimitError,
    SecurePyError,
    SessionClosedError,
)

__all__ = ["AsyncSession", "Session"]

logger = logging.getLogger("securepy")


# Tool calls one execution may have running at once (a hostile child could queue unbounded).
MAX_CALLS_IN_FLIGHT = 64
INTERRUPT_GRACE = 1.0
_TOOL_THREADS = 8

_warned_unsandboxed = False


def _warn_unsandboxed(session_id: str) -> None:
    """WARNING once per process (a pool of unsandboxed sessions would repeat it endlessly),
    INFO after that."""
    global _warned_unsandboxed
    level = logging.INFO if _warned_unsandboxed else logging.WARNING
    _warned_unsandboxed = True
    logger.log(level, "session %s runs WITHOUT a sandbox (sandbox=False): the code can read "
               "what this user can and reach the network", session_id,
               extra={"session_id": session_id})


class _SessionBase:
    """What both twins share: options, guards, the audit trail, the child's lifecycle."""

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
        self._auditor: Auditor | None = open_auditor(self.id, config.audit_log, config.audit)
        self._handler: logging.Handler | None = None
        self._finalizer = weakref.finalize(self, kill_quietly, None)
        if config.verbose:
            self._handler = _attach_verbose_handler(self.id)

    @property
    def tools(self) -> dict[str, Tool]:
        """The session's tools by name (a copy)."""
        return dict(self._config.tools)

    @property
    def sandboxed(self) -> bool:
        """True when the code runs inside the OS sandbox."""
        return self._config.sandbox

    def is_alive(self) -> bool:
        """True if the session is open and its child process is running."""
        child = self._child
        return not self._closed and child is not None and child.process.poll() is None

    def _emit(self, event: str, **fields: Any) -> None:
        if self._auditor is not None:
            self._auditor.emit(event, fields)

    def _sanitize(self, text: str) -> str:
        if not self._config.sanitize_errors:
            return text
        from ._sanitize import sanitize_text

        return sanitize_text(text)

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
            _warn_unsandboxed(self.id)

    def _drop_child(self) -> None:
        child, self._child = self._child, None
        self._finalizer.detach()
        kill_quietly(child)

    def _check_before_execute(self, code: str, validate: bool) -> None:
        """The guards that need no round trip to the child."""
        if self._closed:
            raise SessionClosedError("the session is closed; create a new one")
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

    def _hold(self, pool_name: str) -> None:
        """Hold the session for one execute (then :meth:`_let_go`, in a ``finally``)."""
        if not self._busy.acquire(blocking=False):
            raise SessionClosedError(
                "the session is busy running another execute; a session runs one execute at a "
                f"time (use a {pool_name} to run code concurrently)")

    def _let_go(self) -> None:
        """End of an execute; a child left behind by close() goes now."""
        self._busy.release()
        if self._closed:
            self._drop_child()

    def _refuse(self, reason: str) -> typing.NoReturn:
        self._emit("policy_denied", what="execute", reason=reason)
        raise PolicyError(reason)

    def _new_turn(self, on_output: OnOutput | None, max_tool_calls: Any) -> Turn:
        limit = self._config.max_tool_calls if isinstance(max_tool_calls, _Default) else (
            max_tool_calls)
        return Turn(
            self._config.tools,
            max_tool_calls=limit,
            max_output_bytes=self._config.max_output_bytes,
            on_output=on_output,
            emit=self._emit if self._auditor is not None else None,
            sanitize=self._sanitize,
        )

    def _resolve_timeout(self, timeout: Any) -> float | None:
        return self._config.timeout if isinstance(timeout, _Default) else check_timeout(timeout)

    def _execute_message(self, code: str) -> dict[str, Any]:
        self._executions += 1
        filename = f"<cell-{self._executions}>"
        if self._auditor is not None:
            self._emit("execute_start", code=_truncate_code(code), sha256=_sha256(code))
        return {"kind": "execute", "code": code, "filename": filename}

    def _complete(self, turn: Turn, finish: Finish, started: float) -> Execution:
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

    def _record_error(self, error: SecurePyError) -> None:
        if isinstance(error, ResourceLimitError):
            self._emit("limit_exceeded", limit=error.limit, message=str(error))
        elif isinstance(error, ExecutionTimeout):
            self._emit("execute_timeout", timeout=error.timeout, state_kept=error.state_kept)
        else:
            self._emit("execute_error", type=getattr(error, "type_name", type(error).__name__),
                       message=getattr(error, "message", str(error)))
        logger.info("session %s: execution failed: %s", self.id, type(error).__name__,
                    extra={"session_id": self.id})

    def _death_error(self, exc: ProtocolError, turn: Turn) -> SecurePyError:
        """What a broken turn means (a resource limit if the exit status says so), with the
        output the code printed before."""
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

    def _stop_child_then_finish_close(self) -> None:
        child = self._child
        if self._busy.locked() and child is not None:
            # An execute is reading the socket: killing the child wakes it (end of stream),
            # and it drops the child itself; closing the socket under it would not wake it.
            child.process.kill()
            self._finish_close(drop_child=False)
        else:
            self._finish_close()

    def _restart_after_cut_frame(self, finish: Finish, turn: Turn) -> Finish:
        """A frame to the child was cut off (a send ran into the deadline): the stream is out
        of step, so the child is replaced and the state is lost whatever the turn said."""
        self._drop_child()
        if not self._closed:
            with contextlib.suppress(SecurePyError):
                self._adopt_child(start_child(self._config), "a frame to the child was cut off")
        return _state_lost(finish, turn)

    def _finish_close(self, *, drop_child: bool = True) -> None:
        if drop_child:
            self._drop_child()
        self._emit("session_close")
        logger.info("session %s closed", self.id, extra={"session_id": self.id})
        if self._auditor is not None:
            self._auditor.close()
        if self._handler is not None:
            logging.getLogger("securepy").removeHandler(self._handler)
            self._handler = None


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

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]] | Tool | Callable[..., Any] = (),
        *,
        sandbox: bool = True,
        limits: Limits | None = None,
        timeout: float | None = 30,
        python: str | None = None,
        max_frame_bytes: int = protocol.MAX_FRAME_BYTES,
        max_output_bytes: int | None = DEFAULT,
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
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        try:
            self._adopt_child(child or start_child(config), None)
        except BaseException:
            self._closed = True
            self._finish_close()
            raise

    @classmethod
    def _from_config(cls, config: SessionConfig, child: Child | None = None) -> Session:
        session = cls.__new__(cls)
        session._init_from_config(config, child)
        return session

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<securepy.Session {self.id} {state} sandbox={self._config.sandbox}>"

    def execute(
        self,
        code: str,
        *,
        timeout: float | None = DEFAULT,
        on_output: OnOutput | None = None,
        max_tool_calls: int | None = DEFAULT,
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
            securepy.errors.SessionClosedError: the session is closed or busy.
            securepy.errors.ProtocolError: the child broke the protocol and was restarted.
        """
        self._check_before_execute(code, validate)
        self._hold("SessionPool")
        try:
            return self._execute_locked(code, self._resolve_timeout(timeout), on_output,
                                        max_tool_calls)
        finally:
            self._let_go()

    def _execute_locked(self, code: str, timeout: float | None, on_output: OnOutput | None,
                        max_tool_calls: Any) -> Execution:
        if self._closed:
            raise SessionClosedError("the session is closed; create a new one")
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        if self._child is None:
            self._adopt_child(start_child(self._config), "the previous child was stopped")
        child = self._child
        assert child is not None
        turn = self._new_turn(on_output, max_tool_calls)
        channel = child.channel
        try:
            self._send(child, channel, self._execute_message(code), deadline)
            finish = self._drive(child, channel, turn, deadline, timeout)
        except ProtocolError as exc:
            if self._closed:
                self._drop_child()
                raise SessionClosedError("the session was closed while this execute ran"
                                         ) from None
            error = self._death_error(exc, turn)
            self._restart(str(error))
            self._record_error(error)
            raise error from None
        except DeadlineExceeded:  # a send could not finish: the child stopped reading
            self._restart("the child stopped reading its socket")
            finish = Finish(error=ExecutionTimeout(timeout or 0.0, state_kept=False,
                                                   stdout=turn.stdout, stderr=turn.stderr))
        except BaseException:
            # An exception from on_output, or Ctrl-C: the turn is abandoned half-way, so the
            # child (still running it) is replaced before the exception goes on.
            self._restart("the execute was abandoned by an exception on the host")
            raise
        # (Only if this child is still the session's: a restart may already have replaced it.)
        if channel.broken and self._child is child:
            finish = self._restart_after_cut_frame(finish, turn)
        if finish.error is not None:
            self._record_error(finish.error)
            raise finish.error
        return self._complete(turn, finish, started)

    def _send(self, child: Child, channel: Channel, message: dict[str, Any],
              deadline: float | None) -> None:
        frame = protocol.encode_frame(message)
        with child.send_lock:
            channel.send_frame(frame, deadline)

    def _drive(self, child: Child, channel: Channel, turn: Turn, deadline: float | None,
               timeout: float | None) -> Finish:
        pending: dict[int, _PendingCall] = {}
        relay = _NO_RELAY
        try:
            while True:
                if relay.holder != _CALLER:
                    item = relay.wait(deadline)
                    if isinstance(item, Finish):
                        return item
                    if isinstance(item, BaseException):
                        raise item
                    if item is None:
                        relay.take_back_from_a_running_tool()
                        continue
                    relay.took_back()
                    action: Any = item.action
                else:
                    try:
                        message = channel.receive(_earliest(deadline, pending))
                    except DeadlineExceeded:
                        if deadline is not None and time.monotonic() >= deadline:
                            return self._interrupt_then_kill(child, channel, turn, timeout)
                        self._expire_tool_calls(child, channel, turn, pending)
                        continue
                    action = turn.feed(message)
                    if isinstance(action, CallTool) and _can_relay(action, message):
                        if relay is _NO_RELAY:
                            relay = _Relay()
                        relay.holder = _TOOL_RUNNING
                        self._tool_executor().submit(self._run_tools_then_read, child, channel,
                                                     turn, action, deadline, relay)
                        continue
                if isinstance(action, CallTool) and len(pending) >= MAX_CALLS_IN_FLIGHT:
                    self._send(child, channel, _too_many_in_flight(action), deadline)
                elif isinstance(action, CallTool):
                    self._start_tool_call(child, channel, turn, action, deadline, pending)
                elif isinstance(action, Reply):
                    self._send(child, channel, action.message, deadline)
                elif isinstance(action, Finish):
                    return action
        finally:
            for call in tuple(pending.values()):
                call.claim()

    def _run_tools_then_read(self, child: Child, channel: Channel, turn: Turn,
                             action: CallTool, deadline: float | None, relay: _Relay) -> None:
        """Run a tool for single-threaded code, then keep reading in this thread.

        The code is blocked on this call, so nothing else can come from it meanwhile: the
        thread that ran the tool reads the next message itself and runs the next such call
        at once, saving a thread hand-off per call. Anything else goes back to the caller.
        """
        try:
            self._relay_turn(child, channel, turn, action, deadline, relay)
        except BaseException as exc:  # e.g. on_output raised: the caller re-raises it
            relay.deliver(exc)

    def _relay_turn(self, child: Child, channel: Channel, turn: Turn, action: CallTool,
                    deadline: float | None, relay: _Relay) -> None:
        while True:
            if not self._run_tool(child, channel, turn, action, deadline):
                relay.hand_back(None)  # the reply could not be sent in time
                return
            if not relay.start_reading():
                return  # the caller took over (the execution's deadline passed)
            try:
                while True:
                    # Spin: this thread has nothing else to do, and the code's next call
                    # usually comes within microseconds.
                    message = channel.receive(deadline, spin=True)
                    next_action = turn.feed(message)
                    if next_action is not None:
                        break
            except DeadlineExceeded:
                relay.hand_back(None)
                return
            except ProtocolError as exc:
                relay.deliver(exc)
                return
            if isinstance(next_action, CallTool) and _can_relay(next_action, message):
                relay.holder = _TOOL_RUNNING
                action = next_action
                continue
            if isinstance(next_action, Finish):
                relay.deliver(next_action)
            else:
                relay.hand_back(next_action)
            return

    def _run_tool(self, child: Child, channel: Channel, turn: Turn, action: CallTool,
                  deadline: float | None) -> bool:
        """Run a tool and send its reply; False if the reply could not be sent in time."""
        started = time.monotonic()
        value: Any = None
        error: BaseException | None = None
        try:
            value = self._call_tool_function(action.tool, action.arguments)
        except BaseException as exc:  # even SystemExit: the code must get an answer
            error = exc
        reply = turn.tool_finished(action, duration=time.monotonic() - started, value=value,
                                   error=error)
        try:
            self._send(child, channel, reply, deadline)
        except DeadlineExceeded:
            return False
        except ProtocolError:
            pass  # the child is gone; the reader reports it
        return True

    def _tool_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                _TOOL_THREADS, thread_name_prefix=f"securepy-tools-{self.id}")
        return self._executor

    def _start_tool_call(self, child: Child, channel: Channel, turn: Turn, action: CallTool,
                         deadline: float | None, pending: dict[int, _PendingCall]) -> None:
        call = _PendingCall(action, time.monotonic(), deadline)
        pending[action.call_id] = call
        self._tool_executor().submit(self._run_tool_and_reply, child, channel, turn, call,
                                     pending)

    def _run_tool_and_reply(self, child: Child, channel: Channel, turn: Turn,
                            call: _PendingCall, pending: dict[int, _PendingCall]) -> None:
        tool = call.action.tool
        logger.info("session %s: tool %s called", self.id, tool.name,
                    extra={"session_id": self.id})
        value: Any = None
        error: BaseException | None = None
        try:
            value = self._call_tool_function(tool, call.action.arguments)
        except BaseException as exc:  # even SystemExit: the code must get an answer
            error = exc
        duration = time.monotonic() - call.started
        if not call.claim():
            return
        pending.pop(call.action.call_id, None)
        reply = turn.tool_finished(call.action, duration=duration, value=value, error=error)
        logger.info("session %s: tool %s %s in %.3f s", self.id, tool.name,
                    "failed" if error else "returned", duration, extra={"session_id": self.id})
        # The child is gone (the reader reports it), or stopped reading (the deadline does).
        with contextlib.suppress(ProtocolError, DeadlineExceeded):
            self._send(child, channel, reply,
                       call.execution_deadline)

    def _call_tool_function(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        if not tool.is_async:
            result = tool.fn(**arguments)
            if not inspect.isawaitable(result):
                return result
            return asyncio.run(_await(result))
        return asyncio.run(tool.fn(**arguments))

    def _expire_tool_calls(self, child: Child, channel: Channel, turn: Turn,
                           pending: dict[int, _PendingCall]) -> None:
        now = time.monotonic()
        for call_id, call in tuple(pending.items()):
            if call.deadline is not None and now >= call.deadline and call.claim():
                pending.pop(call_id, None)
                reply = turn.tool_timed_out(call.action, duration=now - call.started)
                self._send(child, channel, reply, call.execution_deadline)

    def _interrupt_then_kill(self, child: Child, channel: Channel, turn: Turn,
                             timeout: float | None) -> Finish:
        child.process.interrupt()
        grace = time.monotonic() + INTERRUPT_GRACE
        while True:
            try:
                message = channel.receive(grace)
            except (DeadlineExceeded, ProtocolError):
                self._restart("the code did not stop after its timeout")
                return Finish(error=ExecutionTimeout(timeout or 0.0, state_kept=False,
                                                     stdout=turn.stdout, stderr=turn.stderr))
            if message["kind"] in ("result", "error"):
                return Finish(error=ExecutionTimeout(timeout or 0.0, state_kept=True,
                                                     stdout=turn.stdout, stderr=turn.stderr))
            if message["kind"] == "tool_call":
                try:
                    self._send(child, channel, error_reply(
                        message["call_id"], "TimeoutError", "the execution timed out"), grace)
                except DeadlineExceeded:
                    self._restart("the code did not stop after its timeout")
                    return Finish(error=ExecutionTimeout(timeout or 0.0, state_kept=False,
                                                         stdout=turn.stdout, stderr=turn.stderr))
            else:
                turn.feed(message)

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
            securepy.errors.SessionClosedError: the session is closed.
        """
        if self._closed:
            raise SessionClosedError("the session is closed; create a new one")
        with self._busy:
            self._drop_child()
            self._adopt_child(start_child(self._config), "restart() was called")

    def close(self) -> None:
        """Stop the child and release everything. Idempotent. An execute running in another
        thread stops at once with SessionClosedError."""
        if self._closed:
            return
        self._closed = True
        self._stop_child_then_finish_close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


_CALLER, _TOOL_RUNNING, _TOOL_READING = "caller", "tool running", "tool reading"


@dataclasses.dataclass(frozen=True, slots=True)
class _HandBack:
    """A tool thread stops reading; the caller reads again and acts on ``action``."""

    action: Any


class _Relay:
    """Who reads the socket during a turn: the caller, or a tool thread (see
    ``Session._run_tools_then_read``). Exactly one of them reads at a time."""

    def __init__(self) -> None:
        self.holder = _CALLER
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue[Finish | BaseException | _HandBack] = queue.SimpleQueue()

    def start_reading(self) -> bool:
        """Called by the tool thread: False if the caller has taken the socket back."""
        with self._lock:
            if self.holder != _TOOL_RUNNING:
                return False
            self.holder = _TOOL_READING
            return True

    def hand_back(self, action: Any) -> None:
        """Called by the tool thread as it stops reading. The socket is the caller's only once
        the caller has taken this from the inbox (``took_back``): were ``holder`` set here, a
        caller that had not yet looked would read the socket and leave ``action`` unanswered."""
        self._inbox.put(_HandBack(action))

    def took_back(self) -> None:
        with self._lock:
            self.holder = _CALLER

    def deliver(self, item: Finish | BaseException) -> None:
        self._inbox.put(item)

    def wait(self, deadline: float | None) -> Finish | BaseException | _HandBack | None:
        """The tool thread's news, or None at the deadline."""
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.01)
        try:
            return self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def take_back_from_a_running_tool(self) -> None:
        """At the deadline: a thread stuck in a tool cannot be stopped, so the caller reads
        (and interrupts) without it. A thread that is reading hands back by itself."""
        with self._lock:
            if self.holder == _TOOL_RUNNING:
                self.holder = _CALLER


# Most turns call no tool: they share this one, which never leaves the caller.
_NO_RELAY = _Relay()


def _too_many_in_flight(action: CallTool) -> dict[str, Any]:
    return error_reply(action.call_id, "PolicyError",
                       f"more than {MAX_CALLS_IN_FLIGHT} tool calls are in flight at once; "
                       "wait for some to return", kind="policy")


def _state_lost(finish: Finish, turn: Turn) -> Finish:
    """The same outcome, told as a restart: an interrupt that kept state no longer did."""
    error = finish.error
    if isinstance(error, ExecutionTimeout):
        return Finish(error=ExecutionTimeout(error.timeout, state_kept=False,
                                             stdout=turn.stdout, stderr=turn.stderr))
    return finish


def _can_relay(action: CallTool, message: dict[str, Any]) -> bool:
    # Only for code that cannot send anything else meanwhile (the child says so), and for
    # tools without their own timeout (a reading thread could not enforce it).
    return message.get("solo") is True and action.tool.timeout is None


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class _PendingCall:
    """A tool call in flight. Exactly one party (the tool's thread, or a timeout) replies."""

    def __init__(self, action: CallTool, started: float, execution_deadline: float | None
                 ) -> None:
        self.action = action
        self.started = started
        self.execution_deadline = execution_deadline
        own = action.tool.timeout
        tool_deadline = None if own is None else started + own
        # The execution's deadline is handled by the turn itself, not per call.
        self.deadline = tool_deadline
        self._claimed = False
        self._lock = threading.Lock()

    def claim(self) -> bool:
        with self._lock:
            if self._claimed:
                return False
            self._claimed = True
            return True


def _earliest(deadline: float | None, pending: dict[int, _PendingCall]) -> float | None:
    if not pending:
        return deadline
    # A snapshot: tool threads remove their calls while this runs.
    times = [call.deadline for call in tuple(pending.values()) if call.deadline is not None]
    if deadline is not None:
        times.append(deadline)
    return min(times) if times else None


@typing.final
class AsyncSession(_SessionBase):
    """Async counterpart of :class:`Session`; same arguments.

    The child starts on first use or on ``async with``. Async host tools are awaited on the
    caller's event loop; sync tools run in a bounded thread pool, off the loop. Cancelling an
    awaiting ``execute`` interrupts the code (and kills the child if it does not stop); the
    session stays usable.
    """

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]] | Tool | Callable[..., Any] = (),
        **options: Any,
    ) -> None:
        # The options are Session's, declared and documented once there.
        self._init_from_config(make_config(tools, **options))

    def _init_from_config(self, config: SessionConfig, child: Child | None = None) -> None:
        super().__init__(config, child)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        if child is not None:
            self._adopt_child(child, None)

    @classmethod
    def _from_config(cls, config: SessionConfig, child: Child | None = None) -> AsyncSession:
        session = cls.__new__(cls)
        session._init_from_config(config, child)
        return session

    async def __aenter__(self) -> AsyncSession:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<securepy.AsyncSession {self.id} {state} sandbox={self._config.sandbox}>"

    async def start(self) -> None:
        """Start the child now rather than on first use.

        Raises:
            securepy.errors.SandboxUnavailableError: the sandbox cannot start on this host.
        """
        if self._closed:
            raise SessionClosedError("the session is closed; create a new one")
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
        timeout: float | None = DEFAULT,
        on_output: OnOutput | None = None,
        max_tool_calls: int | None = DEFAULT,
        validate: bool = True,
    ) -> Execution:
        """Async counterpart of :meth:`Session.execute`; same arguments."""
        self._check_before_execute(code, validate)
        self._hold("AsyncSessionPool")
        try:
            return await self._execute_locked(code, self._resolve_timeout(timeout), on_output,
                                              max_tool_calls)
        finally:
            self._let_go()

    async def _execute_locked(self, code: str, timeout: float | None,
                              on_output: OnOutput | None, max_tool_calls: Any) -> Execution:
        await self.start()
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        child = self._child
        assert child is not None
        turn = self._new_turn(on_output, max_tool_calls)
        channel = child.async_channel
        try:
            await channel.send(self._execute_message(code), deadline)
            finish = await self._drive(child, channel, turn, deadline, timeout)
        except ProtocolError as exc:
            if self._closed:
                self._drop_child()
                raise SessionClosedError("the session was closed while this execute ran"
                                         ) from None
            error = self._death_error(exc, turn)
            await self._restart(str(error))
            self._record_error(error)
            raise error from None
        except DeadlineExceeded:  # a send could not finish: the child stopped reading
            await self._restart("the child stopped reading its socket")
            finish = Finish(error=ExecutionTimeout(timeout or 0.0, state_kept=False,
                                                   stdout=turn.stdout, stderr=turn.stderr))
        except asyncio.CancelledError:
            raise  # _drive has already stopped the code (or replaced the child)
        except BaseException:
            # An exception from on_output: the turn is abandoned half-way, so the child
            # (still running it) is replaced before the exception goes on.
            await self._restart("the execute was abandoned by an exception on the host")
            raise
        if channel.broken and self._child is child:
            await self._restart("a frame to the child was cut off")
            finish = _state_lost(finish, turn)
        if finish.error is not None:
            self._record_error(finish.error)
            raise finish.error
        return self._complete(turn, finish, started)

    async def _drive(self, child: Child, channel: AsyncChannel, turn: Turn,
                     deadline: float | None, timeout: float | None) -> Finish:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    message = await channel.receive(deadline)
                except DeadlineExceeded:
                    return await self._interrupt_then_kill(channel, turn, timeout)
                action = turn.feed(message)
                if isinstance(action, CallTool) and len(tasks) >= MAX_CALLS_IN_FLIGHT:
                    await channel.send(_too_many_in_flight(action), deadline)
                elif isinstance(action, CallTool):
                    task = asyncio.ensure_future(
                        self._run_tool_and_reply(channel, turn, action, deadline))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif isinstance(action, Reply):
                    await channel.send(action.message, deadline)
                elif isinstance(action, Finish):
                    return action
        except asyncio.CancelledError:
            await asyncio.shield(self._stop_after_cancel(channel, turn))
            raise
        finally:
            for task in tasks:
                task.cancel()

    async def _run_tool_and_reply(self, channel: AsyncChannel, turn: Turn, action: CallTool,
                                  deadline: float | None) -> None:
        # The child is gone (the reader reports it), or stopped reading (the deadline does).
        with contextlib.suppress(ProtocolError, DeadlineExceeded):
            await self._run_tool_and_send(channel, turn, action, deadline)

    async def _run_tool_and_send(self, channel: AsyncChannel, turn: Turn, action: CallTool,
                                 deadline: float | None) -> None:
        started = time.monotonic()
        value: Any = None
        error: BaseException | None = None
        try:
            async with asyncio.timeout(action.tool.timeout) as scope:
                value = await self._call_tool_function(action.tool, action.arguments)
        except TimeoutError as exc:
            if not scope.expired():  # the tool's own TimeoutError, not its time limit
                error = exc
            else:
                await channel.send(
                    turn.tool_timed_out(action, duration=time.monotonic() - started), deadline)
                return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # even SystemExit: the code must get an answer
            error = exc
        reply = turn.tool_finished(action, duration=time.monotonic() - started, value=value,
                                   error=error)
        await channel.send(reply, deadline)

    async def _call_tool_function(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        if tool.is_async:
            return await tool.fn(**arguments)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                _TOOL_THREADS, thread_name_prefix=f"securepy-tools-{self.id}")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, lambda: tool.fn(**arguments))
        return await result if inspect.isawaitable(result) else result

    async def _interrupt_then_kill(self, channel: AsyncChannel, turn: Turn,
                                   timeout: float | None) -> Finish:
        kept = await self._wait_after_interrupt(channel, turn)
        if not kept:
            await self._restart("the code did not stop after its timeout")
        return Finish(error=ExecutionTimeout(timeout or 0.0, state_kept=kept,
                                             stdout=turn.stdout, stderr=turn.stderr))

    async def _stop_after_cancel(self, channel: AsyncChannel, turn: Turn) -> None:
        kept = await self._wait_after_interrupt(channel, turn)
        if not kept:
            await self._restart("the code did not stop after its execute was cancelled")
        self._emit("execute_timeout", timeout=None, state_kept=kept, cancelled=True)

    async def _wait_after_interrupt(self, channel: AsyncChannel, turn: Turn) -> bool:
        """Interrupt the code; True if it stopped within the grace period."""
        child = self._child
        if child is None:
            return False
        child.process.interrupt()
        grace = time.monotonic() + INTERRUPT_GRACE
        while True:
            try:
                message = await channel.receive(grace)
            except (DeadlineExceeded, ProtocolError):
                return False
            if message["kind"] in ("result", "error"):
                return True
            if message["kind"] == "tool_call":
                try:
                    await channel.send(error_reply(message["call_id"], "TimeoutError",
                                                   "the execution timed out"), grace)
                except DeadlineExceeded:
                    return False
            else:
                turn.feed(message)

    async def _restart(self, reason: str) -> None:
        self._drop_child()
        if self._closed:
            return
        try:
            child = await start_child_in_thread(self._config)
        except SecurePyError:
            return
        self._adopt_child(child, reason)

    async def restart(self) -> None:
        """Async counterpart of :meth:`Session.restart`.

        Raises:
            securepy.errors.SessionClosedError: the session is closed, or an execute is running.
        """
        if self._closed:
            raise SessionClosedError("the session is closed; create a new one")
        if self._busy.locked():
            raise SessionClosedError("the session is busy running an execute; restart it "
                                     "after the execute returns")
        self._drop_child()
        await self._restart("restart() was called")

    async def close(self) -> None:
        """Async counterpart of :meth:`Session.close`."""
        if self._closed:
            return
        self._closed = True
        self._stop_child_then_finish_close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def check_syntax(code: str) -> None:
    """Raise CodeValidationError if ``code`` does not parse (top-level await allowed)."""
    if code in _parsed_recently:
        return
    try:
        # To bytecode, not just an AST: some SyntaxErrors ("'return' outside function")
        # come from the compiler.
        compile(code, "<code>", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        raise CodeValidationError(
            exc.msg or "invalid syntax", lineno=exc.lineno or 0, offset=exc.offset or 0
        ) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise CodeValidationError(f"the code cannot be parsed: {exc}") from None
    if len(_parsed_recently) >= 64:
        # Other threads may be trimming too: losing that race only costs a parse.
        with contextlib.suppress(RuntimeError, StopIteration, KeyError):
            del _parsed_recently[next(iter(_parsed_recently))]
    _parsed_recently[code] = None


# Agents resend the same snippets; parsing them again on the host costs more than running them.
_parsed_recently: dict[str, None] = {}


def _truncate_code(code: str, limit: int = 10_000) -> str:
    if len(code) <= limit:
        return code
    return code[:limit] + f"\n...[truncated: {len(code) - limit} more characters]"


def _sha256(code: str) -> str:
    import hashlib

    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


class _SessionFilter(logging.Filter):
    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "session_id", None) == self.session_id


def _attach_verbose_handler(session_id: str) -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("securepy %(levelname)s %(message)s"))
    handler.addFilter(_SessionFilter(session_id))
    securepy_logger = logging.getLogger("securepy")
    securepy_logger.addHandler(handler)
    if securepy_logger.level == logging.NOTSET or securepy_logger.level > logging.INFO:
        securepy_logger.setLevel(logging.INFO)
    return handler
