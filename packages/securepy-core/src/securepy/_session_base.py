"""What Session and AsyncSession share: options, guards, the audit trail, the child's lifecycle,
and every step of an execute that does not wait. The twins (``_session.py``) add only the
steps that wait, each in its own way, so they line up line for line."""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import threading
import time
import typing
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from ._actions import Finish
from ._audit import Auditor, open_auditor
from ._child import Child, kill_quietly
from ._child_text import well_formed
from ._config import OnOutput, SessionConfig, UseSessionDefault, check_timeout
from ._execution import Execution
from ._launchers import wall_of
from ._launchers.shared import SharedTemplateStatus, close_shared_templates, shared_templates
from ._logging import attach_verbose_handler, logger, warn_unsandboxed
from ._sanitize import sanitize_text
from ._tool_loop import ToolLoop
from ._tools import Tool
from ._tracing import record_session_start, start_execute_span
from ._turn import Turn
from ._validate import check_syntax
from .errors import (
    ExecutionTimeout,
    PolicyError,
    ProtocolError,
    ResourceLimitError,
    SecurePyError,
    SessionBusyError,
    SessionClosedError,
)

__all__ = ["SessionBase", "state_lost"]

_TOOL_THREADS = 8


class SessionBase:
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
        self._running: Any = None  # the running execute's turn loop (for interrupt())
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
        head = f"<securepy.{type(self).__name__} {self.id}"
        tools = f"tools={len(self._config.tools)}>"
        if self._closed:
            return f"{head} closed sandbox={self._config.sandbox} {tools}"
        child = self._child
        pid = "" if child is None else f" pid={child.process.pid}"
        return f"{head} open sandbox={self._config.sandbox}{pid} {tools}"

    @staticmethod
    def shared_templates() -> tuple[SharedTemplateStatus, ...]:
        """The process's shared templates (sessions outside pools fork from them): for each,
        the interpreter and mounts it serves, its host ``pid`` (None while none runs), the
        host file descriptors it holds (``fds``) and how many ``sessions`` forked from it
        still run. What a leak check must account for."""
        return shared_templates()

    @staticmethod
    def close_shared_templates() -> None:
        """Stop the shared templates now rather than at interpreter exit. Sessions forked
        from them stop too (each restarts on its next execute, its state lost); the next
        session starts a new template."""
        close_shared_templates()

    @property
    def tools(self) -> dict[str, Tool]:
        """The session's tools by name (a copy)."""
        return dict(self._config.tools)

    @property
    def sandboxed(self) -> bool:
        """True when the code runs inside the OS sandbox."""
        return self._config.sandbox

    @property
    def wall(self) -> str:
        """Which wall the code runs behind: "namespaces" (bubblewrap, or a session forked from
        a template), "landlock" (Landlock and seccomp, where namespaces cannot be made) or
        "none" (``sandbox=False``)."""
        child = self._child
        if child is None:
            return "none" if not self._config.sandbox else self._config.wall
        return wall_of(child.process)

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
        usage = {"pid": child.process.pid, "sandbox": child.process.sandboxed,
                 "wall": wall_of(child.process)}
        if reason is None:
            self._emit("session_start", limits=self._config.limits.to_wire(), **usage)
            logger.info("session %s started (pid %d, wall %s)", self.id, child.process.pid,
                        usage["wall"],
                        extra={"session_id": self.id})
        else:
            self._emit("session_restart", reason=reason, **usage)
            logger.info("session %s restarted (pid %d): %s", self.id, child.process.pid,
                        reason, extra={"session_id": self.id})
        if not child.process.sandboxed and reason is None:
            warn_unsandboxed(self.id)
        record_session_start(self.id, pid=child.process.pid, sandboxed=child.process.sandboxed,
                             started_ns=child.started_ns, restart_reason=reason)

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

    def _check_before_execute(self, code: str, validate: bool, on_output: OnOutput | None
                              ) -> None:
        """The guards that need no round trip to the child."""
        self._check_open()
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        if on_output is not None and not callable(on_output):
            raise TypeError(f"on_output must be a callable taking (stream, text), not "
                            f"{type(on_output).__name__}")
        config = self._config
        if config.max_code_length is not None and len(code) > config.max_code_length:
            self._refuse(f"the code is {len(code)} characters long, over max_code_length="
                         f"{config.max_code_length}")
        if config.max_executions is not None and self._executions >= config.max_executions:
            self._refuse(f"this session already ran max_executions={config.max_executions} "
                         "executions; start a new session")
        if config.pre_execute_hook is not None:
            self._ask_pre_execute_hook(config.pre_execute_hook, code)
        if validate:
            check_syntax(code)

    def _ask_pre_execute_hook(self, hook: Callable[[str], Any], code: str) -> None:
        try:
            verdict = hook(code)
        except Exception as exc:  # a hook that fails refuses; its exception is the cause
            reason = (f"the pre_execute_hook raised {type(exc).__name__}: {str(exc)[:500]}; "
                      "the code was not run")
            self._emit("policy_denied", what="execute", reason=reason)
            raise PolicyError(reason) from exc
        if verdict is False:
            self._refuse("the pre_execute_hook refused this code")

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
            on_output=None if on_output is None else _tolerant(on_output, self.id),
            emit=self._emit if self._auditor is not None else None,
            sanitize=sanitize_text if config.sanitize_errors else _unchanged,
        )
        self._executions += 1
        if self._auditor is not None:
            self._emit("execute_start", code=code, sha256=_sha256(code))
        turn.span = start_execute_span(self.id, code, record_code=config.trace_content)
        turn.trace_arguments = config.trace_content
        message = {"kind": "execute", "code": code, "filename": f"<cell-{self._executions}>",
                   "turn": turn.id}
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
            return state_lost(finish, turn), "a frame to the child was cut off"
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
                detail = getattr(child.process, "exit_detail", None)
                why = f" ({well_formed(detail[:300])})" if isinstance(detail, str) else ""
                return ResourceLimitError(
                    f"the code hit the {limit} limit{why} and the child was stopped; the "
                    "session was restarted with a fresh namespace", limit=limit,
                    state_kept=False, **output)
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


def _unchanged(text: str) -> str:
    return text


def _tolerant(on_output: OnOutput, session_id: str) -> OnOutput:
    """``on_output`` whose exceptions are logged, not raised: a bug in a display handler must
    not cost the session its state (the output is kept in the Execution either way)."""
    failed = False

    def deliver(stream: str, text: str) -> None:
        nonlocal failed
        try:
            on_output(stream, text)
        except Exception as exc:
            extra = {"session_id": session_id}
            if failed:
                logger.debug("session %s: the on_output handler raised %s again", session_id,
                             type(exc).__name__, extra=extra)
                return
            failed = True
            logger.warning(
                "session %s: the on_output handler raised %s: %s; the output is kept in the "
                "Execution and the code goes on (later failures of this execute are logged at "
                "DEBUG)", session_id, type(exc).__name__, str(exc)[:500], exc_info=True,
                extra=extra)

    return deliver


def state_lost(finish: Finish, turn: Turn) -> Finish:
    """The same outcome, told as a restart: an interrupt that kept state no longer did."""
    error = finish.error
    if isinstance(error, ExecutionTimeout):
        return Finish(error=ExecutionTimeout(error.timeout, state_kept=False,
                                             stdout=turn.stdout, stderr=turn.stderr))
    return finish


def _sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()
