"""The sans-I/O turn: one execute, from the ``execute`` frame to what ``execute`` returns.

Fed the child's messages and clock readings, a :class:`Turn` says what to do next: send a
frame, run a tool, stop a tool, interrupt the code, or finish (with a value or an error, and
whether the child must be replaced). It never touches a socket, a clock, a thread or a tool
function: ``_sync_turn`` and ``_async_turn`` are the thin loops that do the I/O it asks for,
and tests drive it with no process at all. It owns every rule of a turn:

- **the call lifecycle.** A call id is used once per turn (a reuse is a protocol violation); at
  most ``max_in_flight`` calls are outstanding; a tool's name is checked before its arguments
  are decoded; each call is answered exactly once (by its tool, or by a timeout); once the
  turn's time is up no tool starts, and every outstanding call is answered with a timeout (a
  tool still running has its result dropped); a tool that finishes after its turn ended is
  dropped, never answered into a later turn; a ``result`` or ``error`` frame while calls are
  outstanding is a protocol violation.
- **every deadline.** The execution's, each tool's own, and the grace period after SIGINT.
- **every cap on child data kept by the host.** Output (kept by ``_turn_output``), error
  text, tool-call records.

Its phases::

    RUNNING --time up--> INTERRUPTING --result/error--> ENDED  (timeout, state kept)
       |                      |--grace over, child lost--> ENDED  (timeout, child replaced)
       |--result/error------------------------------------> ENDED

Thread safety: ``feed`` and ``tick`` are called by one reader at a time (the relay may move
that reader between threads); ``start``, ``tool_finished`` and ``end`` may come from any
thread. The call bookkeeping they share is made of single operations on dicts and sets, each
atomic under the GIL (``pop``, ``remove``, a ``tuple()`` snapshot), so the hot path takes no
lock; the counter of timed calls and the phase changes of ``interrupt`` and ``end`` take one.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

from ._actions import Action, Finish, Interrupt, Phase, RunTool, Send, StopTool
from ._child_text import approximate_size, bounded_arguments, error_from, error_reply
from ._execution import Execution, ToolCallRecord
from ._tools import Tool, ToolCallRequest
from ._tracing import MAX_REFUSED_SPANS, record_refused_tool_call
from ._turn_output import CapturedOutput
from ._worker import codec
from .errors import (
    ExecutionError,
    ExecutionTimeout,
    ProtocolError,
    ResourceLimitError,
    SecurePyError,
)

__all__ = [
    "INTERRUPT_GRACE",
    "MAX_CALLS_IN_FLIGHT",
    "MAX_CALL_ID",
    "MAX_KEPT_ARGUMENTS",
    "MAX_MESSAGES",
    "MAX_RECORDS",
    "Action",
    "Finish",
    "Interrupt",
    "Phase",
    "RunTool",
    "Send",
    "StopTool",
    "Turn",
]

# Tool calls one execution may have outstanding at once (a hostile child could queue unbounded).
MAX_CALLS_IN_FLIGHT = 64
# Seconds the code gets to stop after SIGINT before the child is killed.
INTERRUPT_GRACE = 1.0
# Messages one execute may send (output lines and tool calls): each costs the host a parse and
# a check, and the output cap alone does not stop a flood of tiny frames when there is no
# timeout. Far over what real code sends; past it the child is stopped.
MAX_MESSAGES = 1_000_000
# Tool-call records one execution keeps (the audit log, if any, has every call), and the
# approximate characters of arguments they keep in all (past it, a record keeps only the size
# of large arguments).
MAX_RECORDS = 10_000
MAX_KEPT_ARGUMENTS = 1_000_000
# Tool call ids are below this: smaller ints than 2**61 - 1 are their own hash, so ids the
# child picks cannot collide in the turn's set and dict (which would make each call cost as
# much as all before it). JSON-safe as well.
MAX_CALL_ID = 2**53

# Enum members as module globals: in Python 3.11 reading ``Phase.RUNNING`` costs five times a
# global's lookup, and the phase is checked on every message.
_RUNNING, _INTERRUPTING, _ENDED = Phase.RUNNING, Phase.INTERRUPTING, Phase.ENDED


Emit = Callable[..., None]


class Turn:
    """The state of one execute, from the ``execute`` frame to the result or error."""

    __slots__ = (
        "_calls_made",
        "_calls_per_tool",
        "_captured",
        "_emit",
        "_grace",
        "_grace_deadline",
        "_ids",
        "_kept_arguments",
        "_lock",
        "_max_in_flight",
        "_max_messages",
        "_max_tool_calls",
        "_messages",
        "_outstanding",
        "_queued",
        "_records",
        "_sanitize",
        "_timed",
        "_timeout",
        "_tools",
        "by_caller",
        "cancelled",
        "deadline",
        "id",
        "made_calls",
        "phase",
        "refused_calls",
        "span",
        "trace_arguments",
    )

    def __init__(
        self,
        tools: dict[str, Tool],
        *,
        deadline: float | None,
        timeout: float | None,
        max_tool_calls: int | None,
        max_output_bytes: int | None,
        on_output: Callable[[str, str], Any] | None,
        emit: Emit | None,
        sanitize: Callable[[str], str],
        max_in_flight: int = MAX_CALLS_IN_FLIGHT,
        grace: float = INTERRUPT_GRACE,
    ) -> None:
        self._tools = tools
        self.deadline = deadline  # the execution's (monotonic clock), None for none
        self._timeout = timeout
        self._max_tool_calls = max_tool_calls
        self._captured = CapturedOutput(max_output_bytes, on_output)
        self._emit = emit  # None: no audit trail, so the events are not even built
        self._sanitize = sanitize
        self._max_in_flight = max_in_flight
        self._grace = grace
        self.phase = _RUNNING
        self.cancelled = False  # the caller gave up (async cancellation), not the clock
        self.by_caller = False  # interrupt() stopped the code, not the clock
        # Sent with the execute and echoed in its result or error. Random, so no thread the
        # code left running can end a later turn before it starts: a result it forged between
        # turns names no turn the host is running, and the child is replaced.
        self.id = secrets.randbits(62)
        self._messages = 0
        self._max_messages = MAX_MESSAGES
        # Tracing (opaque to the turn): the execute's span, the parent of its tool calls' spans.
        self.span: Any = None
        self.trace_arguments = False
        self.refused_calls = 0  # tool calls refused before running (each traced, up to a cap)
        self._grace_deadline: float | None = None
        self._calls_made = 0
        self._calls_per_tool: dict[str, int] = {}
        self._ids: set[int] = set()
        self.made_calls = False  # any tool call this turn (then the end waits for replies)
        self._outstanding: dict[int, RunTool] = {}  # answered by no one yet
        self._queued: set[int] = set()  # outstanding, and its tool has not started
        self._timed = 0  # outstanding calls with a deadline of their own
        self._records: list[ToolCallRecord] = []
        self._kept_arguments = 0  # approximate characters of arguments the records keep
        self._lock = threading.Lock()

    # -- the child's messages ---------------------------------------------------------------

    def feed(self, message: dict[str, Any], now: float) -> Action:
        """Take one validated message from the child at clock reading ``now``; say what to do.

        Raises:
            securepy.errors.ProtocolError: the message breaks the turn's rules (the session
                kills the child and restarts it).
        """
        self._messages += 1
        if self._messages > self._max_messages:
            return self._finish(Finish(error=self._too_many_messages(),
                                       restart="the code sent too many messages"))
        kind = message["kind"]
        if kind == "output":
            self._captured.take_text(message["stream"], message["text"])
            return None
        if kind == "tool_call":
            return self._take_tool_call(message, now)
        if kind == "display":
            self._captured.take_display(message["data"])
            return None
        if kind == "result" or kind == "error":
            return self._take_end(message)
        raise ProtocolError(f"the child sent an unexpected {kind!r} message during a turn")

    def _take_tool_call(self, message: dict[str, Any], now: float) -> Action:
        call_id, name = message["call_id"], message["name"]
        if not 0 <= call_id < MAX_CALL_ID:  # ids the child picks must not collide in a set
            raise ProtocolError(f"the child sent tool call id {str(call_id)[:30]}, outside "
                                f"0..{MAX_CALL_ID - 1}")
        # Only the reader touches the ids: no lock needed.
        if call_id in self._ids:
            raise ProtocolError(f"the child reused tool call id {call_id} within one turn")
        self._ids.add(call_id)
        self.made_calls = True
        in_flight = len(self._outstanding)
        if self.phase is not _RUNNING or (self.deadline is not None and now >= self.deadline):
            return Send(error_reply(call_id, "TimeoutError", "the execution timed out"))
        tool = self._tools.get(name)
        if tool is None:  # refused before its arguments cost anything to decode
            if self._emit is not None:
                self._emit("tool_call", tool=name[:200], arguments={})
            known = ", ".join(sorted(self._tools)) or "none"
            return self._refuse(call_id, name, {}, "ToolError",
                                f"there is no tool named {name[:100]!r}; available: {known}")
        try:
            raw = {key: codec.decode(value) for key, value in message["args"].items()}
        except codec.CodecError as exc:
            raise ProtocolError(f"the child sent undecodable tool arguments: {exc}") from None
        if self._emit is not None:
            self._emit("tool_call", tool=name, arguments=raw)
        if in_flight >= self._max_in_flight:
            return self._deny(call_id, name, raw, f"more than {self._max_in_flight} tool calls "
                              "are in flight at once; wait for some to return")
        self._calls_made += 1
        count = self._calls_per_tool[name] = self._calls_per_tool.get(name, 0) + 1
        if self._max_tool_calls is not None and self._calls_made > self._max_tool_calls:
            return self._deny(call_id, name, raw, f"this execution may make at most "
                              f"{self._max_tool_calls} tool calls (max_tool_calls)")
        if tool.max_calls is not None and count > tool.max_calls:
            return self._deny(call_id, name, raw, f"{name}() may be called at most "
                              f"{tool.max_calls} times per execution")
        try:
            arguments = tool.validate_arguments(raw)
        except ValueError as exc:
            return self._refuse(call_id, name, raw, "ValidationError", str(exc))
        if tool.approve is not None:
            reason = _ask_approval(tool, ToolCallRequest(name, arguments, count))
            if reason is not None:
                return self._deny(call_id, name, raw, reason)
        own = tool.timeout
        relay = own is None and message.get("solo") is True
        call = RunTool(call_id, tool, arguments, raw, now, None if own is None else now + own,
                       relay)
        self._outstanding[call_id] = call
        self._queued.add(call_id)
        if own is not None:
            with self._lock:
                self._timed += 1
        return call

    def _refuse(self, call_id: int, name: str, raw: dict[str, Any], type_name: str,
                text: str) -> Send:
        text = self._sanitize(text)
        self._record(name, bounded_arguments(raw), 0.0, ok=False, error=text)
        self._trace_refusal(call_id, name, type_name, text)
        if self._emit is not None:
            self._emit("tool_error", tool=name[:200], type=type_name, message=text,
                       duration=0.0)
        return Send(error_reply(call_id, type_name, text))

    def _deny(self, call_id: int, name: str, raw: dict[str, Any], reason: str) -> Send:
        reason = self._sanitize(reason)
        self._record(name, bounded_arguments(raw), 0.0, ok=False, error=reason)
        self._trace_refusal(call_id, name, "PolicyError", reason)
        if self._emit is not None:
            self._emit("policy_denied", what="tool_call", tool=name, arguments=raw,
                       reason=reason)
        return Send(error_reply(call_id, "PolicyError", reason, kind="policy"))

    def _trace_refusal(self, call_id: int, name: str, type_name: str, reason: str) -> None:
        self.refused_calls += 1
        if self.span is not None and self.refused_calls <= MAX_REFUSED_SPANS:
            record_refused_tool_call(self.span, name, call_id=call_id, type_name=type_name,
                                     reason=reason, tool=self._tools.get(name))

    def _take_end(self, message: dict[str, Any]) -> Finish:
        if message.get("turn") != self.id:
            raise ProtocolError("the child ended an execute other than the one it was running "
                                "(a result or error frame left over from another turn)")
        if self._outstanding:
            raise ProtocolError(
                f"the child ended its turn while {len(self._outstanding)} of its tool calls "
                "were still outstanding")
        if self.phase is _INTERRUPTING:
            return self._finish(Finish(error=self._timeout_error(state_kept=True)))
        if message["kind"] == "error":
            return self._finish(Finish(error=error_from(message, self._sanitize, self.stdout,
                                                        self.stderr)))
        try:
            value = codec.decode(message["value"])
        except codec.CodecError as exc:
            raise ProtocolError(f"the child sent an undecodable result: {exc}") from None
        return self._finish(Finish(value=value))

    # -- the clock --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: only a message can move on)."""
        first = self._grace_deadline if self.phase is _INTERRUPTING else self.deadline
        if not self._timed:
            return first
        times = [c.tool_deadline for c in tuple(self._outstanding.values())
                 if c.tool_deadline is not None]
        if first is not None:
            times.append(first)
        return min(times) if times else None

    def tick(self, now: float) -> list[Action]:
        """What the clock reading ``now`` calls for: stop tools past their own timeout; at the
        execution's deadline answer the queued calls and interrupt; at the end of the grace
        period finish (the child is replaced)."""
        actions: list[Action] = []
        if self._timed:
            expired = [c for c in tuple(self._outstanding.values())
                       if c.tool_deadline is not None and now >= c.tool_deadline]
            for call in expired:
                reply = self.tool_finished(call, duration=now - call.started,
                                           error=TimeoutError(_tool_timeout_text(call)))
                if reply is not None:
                    actions.append(StopTool(call.call_id, reply))
        if self.phase is _RUNNING and self.deadline is not None and now >= self.deadline:
            actions.extend(self.interrupt(now))
        elif (self.phase is _INTERRUPTING and self._grace_deadline is not None
              and now >= self._grace_deadline):
            actions.append(self._finish(Finish(
                error=self._timeout_error(state_kept=False),
                restart=f"the code did not stop after {self._stopped_by()}")))
        return actions

    def interrupt(self, now: float, *, cancelled: bool = False, by_caller: bool = False
                  ) -> list[Action]:
        """Time is up (or the caller gave up, or called ``interrupt()``): no tool starts any
        more, every outstanding call is answered with a timeout (a tool still running is
        stopped if the loop can, and its result dropped), the code is interrupted and has the
        grace period to stop. May be called from another thread than the reader's."""
        if self.phase is not _RUNNING:
            return []
        self.cancelled = cancelled
        self.by_caller = by_caller
        with self._lock:
            self.phase = _INTERRUPTING
            self._grace_deadline = now + self._grace
            outstanding = list(self._outstanding.values())
        actions: list[Action] = []
        for call in outstanding:
            reply = self.tool_finished(call, duration=now - call.started,
                                       error=TimeoutError("the execution timed out"))
            if reply is not None:
                actions.append(StopTool(call.call_id, reply))
        actions.append(Interrupt())
        return actions

    # -- what the loops report --------------------------------------------------------------

    def start(self, call: RunTool) -> bool:
        """A tool thread or task is about to run ``call``: False if it must not (its turn's
        time is up or the turn ended; it was answered already)."""
        try:
            self._queued.remove(call.call_id)
        except KeyError:
            return False  # answered already (by the interrupt), or the turn ended
        # The interrupt sets the phase before it answers the outstanding calls: a call that
        # starts in between is answered by it, and its tool's result is dropped.
        return self.phase is _RUNNING

    def tool_finished(self, call: RunTool, *, duration: float, value: Any = None,
                      error: BaseException | None = None) -> dict[str, Any] | None:
        """Record a finished call; the reply for the child, or None if the call was answered
        already (its own timeout) or its turn ended (the result is dropped). Never raises:
        whatever the tool returned or raised, the child gets an answer."""
        # Exactly one party gets the call out of _outstanding: it answers.
        if self._outstanding.pop(call.call_id, None) is None:
            return None
        self._queued.discard(call.call_id)
        if call.tool_deadline is not None:
            with self._lock:
                self._timed -= 1
        name = call.tool.name
        if error is None:
            try:
                tree = codec.encode(value)
            except Exception as exc:  # an unencodable value becomes the tool's error
                error = exc
            else:
                self._record(name, call.raw_arguments, duration, ok=True)
                if self._emit is not None:
                    self._emit("tool_result", tool=name, duration=duration,
                               result_size=approximate_size(tree))
                return {"kind": "tool_result", "call_id": call.call_id, "ok": True,
                        "value": tree}
        type_name = type(error).__name__
        try:
            text = self._sanitize(str(error)) or type_name
        except Exception:  # a broken __str__ must not leave the call unanswered
            text = type_name
        self._record(name, call.raw_arguments, duration, ok=False, error=f"{type_name}: {text}")
        if self._emit is not None:
            self._emit("tool_error", tool=name, type=type_name, message=text,
                       duration=duration)
        return error_reply(call.call_id, type_name, f"{name}() failed: {type_name}: {text}")

    def child_lost(self, exc: ProtocolError) -> Finish:
        """The child died or broke the stream. While interrupting, that is the timeout's end
        (the child is replaced); otherwise ``exc`` is raised, and the session explains it."""
        if self.phase is not _INTERRUPTING:
            raise exc
        return self._finish(Finish(error=self._timeout_error(state_kept=False),
                                   restart=f"the code did not stop after {self._stopped_by()}"))

    def send_timed_out(self) -> Finish:
        """A frame to the child could not be sent by its deadline: the child stopped reading,
        and the stream may be cut mid-frame, so the child is replaced."""
        return self._finish(Finish(error=self._timeout_error(state_kept=False),
                                   restart="the child stopped reading its socket"))

    def end(self) -> None:
        """The execute is returning: calls still outstanding are dropped (their tools' results
        will never be sent), and nothing of this turn starts any more."""
        if not self.made_calls:  # as in most turns: nothing to drop
            self.phase = _ENDED
            return
        with self._lock:
            self.phase = _ENDED
            self._outstanding.clear()
            self._queued.clear()
            self._timed = 0

    @property
    def ended(self) -> bool:
        """True once the turn is over: nothing of it starts or is sent any more."""
        return self.phase is _ENDED

    @property
    def grace(self) -> float:
        """Seconds the code gets to stop after SIGINT."""
        return self._grace

    @property
    def send_deadline(self) -> float | None:
        """The deadline for a frame the turn sends now."""
        return self._grace_deadline if self.phase is _INTERRUPTING else self.deadline

    # -- the outcome ------------------------------------------------------------------------

    @property
    def stdout(self) -> str:
        return self._captured.stdout

    @property
    def stderr(self) -> str:
        return self._captured.stderr

    @property
    def truncated(self) -> bool:
        """Whether output was dropped for the output cap."""
        return self._captured.truncated

    def build_execution(self, value: Any, *, duration: float) -> Execution:
        captured = self._captured
        return Execution(value, captured.stdout, captured.stderr, tuple(self._records),
                         duration, captured.truncated, tuple(captured.outputs))

    def _finish(self, finish: Finish) -> Finish:
        # No lock: nothing is outstanding when a turn finishes (a result needs none, and the
        # interrupt answered every call), so no tool thread can be deciding whether to start.
        self.phase = _ENDED
        return finish


    def _timeout_error(self, *, state_kept: bool) -> SecurePyError:
        if self.by_caller:  # what the code saw, and what became of the session
            how = ("the code was stopped by interrupt(); the session kept its state"
                   if state_kept else "the code did not stop when interrupted, so the session "
                   "was killed and restarted; its state is lost")
            return ExecutionError("KeyboardInterrupt", how, stdout=self.stdout,
                                  stderr=self.stderr)
        return ExecutionTimeout(self._timeout or 0.0, state_kept=state_kept,
                                stdout=self.stdout, stderr=self.stderr)

    def _stopped_by(self) -> str:
        if self.by_caller:
            return "interrupt()"
        return "its execute was cancelled" if self.cancelled else "its timeout"

    def _too_many_messages(self) -> ResourceLimitError:
        return ResourceLimitError(
            f"the code sent more than {self._max_messages} messages (output lines and tool "
            "calls) in one execute; the child was stopped and the session restarted with a "
            "fresh namespace", limit="messages", state_kept=False, stdout=self.stdout,
            stderr=self.stderr)

    def _record(self, name: str, raw: dict[str, Any], duration: float, *, ok: bool,
                error: str | None = None) -> None:
        records = self._records
        if len(records) >= MAX_RECORDS:
            return
        # The records outlive the turn: their arguments are kept within a budget, else 150
        # calls with 16 MiB strings would keep 2.4 GiB of host memory whatever the caps.
        size = _arguments_size(raw)
        if self._kept_arguments + size > MAX_KEPT_ARGUMENTS:
            raw = bounded_arguments(raw)
        else:
            self._kept_arguments += size
        records.append(ToolCallRecord(name[:200], raw, duration, ok, error))


def _arguments_size(raw: dict[str, Any]) -> int:
    """approximate_size, with a fast path for the usual flat arguments."""
    size = 0
    for value in raw.values():
        kind = type(value)
        if kind is str:
            size += len(value)
        elif kind is int or kind is float or kind is bool or value is None:
            size += 8
        else:
            return approximate_size(raw)
    return size


def _tool_timeout_text(call: RunTool) -> str:
    return f"the tool did not finish within {call.tool.timeout:g} s"


def _ask_approval(tool: Tool, request: ToolCallRequest) -> str | None:
    """None if the hook allows the call, else the reason it gave (or a default one)."""
    assert tool.approve is not None
    try:
        verdict = tool.approve(request)
    except Exception as exc:  # a failing hook denies; it never crashes the host
        return f"the approval hook failed ({type(exc).__name__}), so the call was denied"
    if verdict is None or verdict is True:
        return None
    if isinstance(verdict, tuple) and len(verdict) == 2:
        allowed, reason = verdict
        return None if allowed else str(reason)
    if isinstance(verdict, str):
        return verdict
    return None if verdict else f"the host's approval policy denied this call to {tool.name}()"


