"""The sans-I/O turn driver: fed the child's messages, it says what to do next.

It never touches a socket, a clock or a tool function. ``Session`` and ``AsyncSession`` each wrap
it in a short read-feed-act loop, so the rules of a turn (guards on tool calls, output caps,
error mapping, building the ``Execution``) are written once.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from ._execution import Execution, ToolCall
from ._tools import Tool, ToolCallRequest
from ._worker import codec
from .errors import (
    ExecutionError,
    ProtocolError,
    ResourceLimitError,
    SecurePyError,
)

__all__ = ["CallTool", "Finish", "Reply", "Turn"]

OUTPUT_MARKER = "\n[output truncated: over the {limit}-byte output limit]\n"


@dataclasses.dataclass(frozen=True, slots=True)
class CallTool:
    """Run ``tool`` with ``arguments`` and answer ``call_id`` with :meth:`Turn.tool_finished`."""

    call_id: int
    tool: Tool
    arguments: dict[str, Any]
    raw_arguments: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """Send this message to the child (a tool call refused without running anything)."""

    message: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """The turn is over: the code's ``value``, or the ``error`` to raise."""

    value: Any = None
    error: SecurePyError | None = None


Action = CallTool | Reply | Finish | None
Emit = Callable[..., None]


class Turn:
    """The state of one execute, from the ``execute`` frame to the result or error."""

    def __init__(
        self,
        tools: dict[str, Tool],
        *,
        max_tool_calls: int | None,
        max_output_bytes: int | None,
        on_output: Callable[[str, str], Any] | None,
        emit: Emit | None,
        sanitize: Callable[[str], str],
    ) -> None:
        self._tools = tools
        self._max_tool_calls = max_tool_calls
        self._max_output = max_output_bytes
        self._on_output = on_output
        self._emit = emit  # None: no audit trail, so the events are not even built
        self._sanitize = sanitize
        self._out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._output_size = 0
        self.truncated = False
        self._calls_made = 0
        self._calls_per_tool: dict[str, int] = {}
        self._records: list[ToolCall] = []
        self._lock = threading.Lock()

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, message: dict[str, Any]) -> Action:
        """Take one validated message from the child; return what to do next."""
        kind = message["kind"]
        if kind == "output":
            self._take_output(message["stream"], message["text"])
            return None
        if kind == "tool_call":
            return self._take_tool_call(message)
        if kind == "result":
            return self._finish_with_value(message["value"])
        if kind == "error":
            return Finish(error=self._error_from(message))
        raise ProtocolError(f"the child sent an unexpected {kind!r} message during a turn")

    def _take_output(self, stream: str, text: str) -> None:
        if stream not in self._out:
            raise ProtocolError(f"the child sent output for an unknown stream {stream[:20]!r}")
        if self._max_output is not None:
            room = self._max_output - self._output_size
            if room <= 0:
                self.truncated = True
                return
            encoded_size = len(text.encode("utf-8", "surrogatepass"))
            if encoded_size > room:
                text = text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
                self.truncated = True
                encoded_size = room
            self._output_size += encoded_size
        self._out[stream].append(text)
        if self._on_output is not None and text:
            self._on_output(stream, text)

    def _take_tool_call(self, message: dict[str, Any]) -> Action:
        call_id, name = message["call_id"], message["name"]
        try:
            raw = {key: codec.decode(value) for key, value in message["args"].items()}
        except codec.CodecError as exc:
            raise ProtocolError(f"the child sent undecodable tool arguments: {exc}") from None
        if self._emit is not None:
            self._emit("tool_call", tool=name[:200], arguments=raw)
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return self._refuse(call_id, name, raw, "ToolError",
                                f"there is no tool named {name[:100]!r}; available: {known}")
        with self._lock:
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
        return CallTool(call_id, tool, arguments, raw)

    def _refuse(self, call_id: int, name: str, raw: dict[str, Any], type_name: str,
                text: str) -> Reply:
        text = self._sanitize(text)
        self._record(name, raw, 0.0, ok=False, error=text)
        if self._emit is not None:
            self._emit("tool_error", tool=name[:200], type=type_name, message=text,
                       duration=0.0)
        return Reply(error_reply(call_id, type_name, text))

    def _deny(self, call_id: int, name: str, raw: dict[str, Any], reason: str) -> Reply:
        reason = self._sanitize(reason)
        self._record(name, raw, 0.0, ok=False, error=reason)
        if self._emit is not None:
            self._emit("policy_denied", what="tool_call", tool=name, arguments=raw,
                       reason=reason)
        return Reply(error_reply(call_id, "PolicyError", reason, kind="policy"))

    # -- tool completion (may be called from tool threads) ---------------------------------

    def tool_finished(self, action: CallTool, *, duration: float, value: Any = None,
                      error: BaseException | None = None) -> dict[str, Any]:
        """Record a finished tool call and return the reply message for the child. Never
        raises: whatever the tool returned or raised, the child gets an answer."""
        name = action.tool.name
        if error is None:
            try:
                tree = codec.encode(value)
            except Exception as exc:  # an unencodable value becomes the tool's error
                error = exc
            else:
                self._record(name, action.raw_arguments, duration, ok=True)
                if self._emit is not None:
                    self._emit("tool_result", tool=name, duration=duration,
                               result_size=_approximate_size(tree))
                return {"kind": "tool_result", "call_id": action.call_id, "ok": True,
                        "value": tree}
        type_name = type(error).__name__
        try:
            text = self._sanitize(str(error)) or type_name
        except Exception:  # a broken __str__ must not leave the call unanswered
            text = type_name
        self._record(name, action.raw_arguments, duration, ok=False, error=f"{type_name}: {text}")
        if self._emit is not None:
            self._emit("tool_error", tool=name, type=type_name, message=text,
                       duration=duration)
        return error_reply(action.call_id, type_name, f"{name}() failed: {type_name}: {text}")

    def tool_timed_out(self, action: CallTool, *, duration: float) -> dict[str, Any]:
        """The reply for a tool call that ran past its own timeout."""
        limit = action.tool.timeout
        within = f"within {limit:g} s" if limit is not None else "in time"
        return self.tool_finished(
            action, duration=duration, error=TimeoutError(f"the tool did not finish {within}"))

    def _record(self, name: str, raw: dict[str, Any], duration: float, *, ok: bool,
                error: str | None = None) -> None:
        with self._lock:
            self._records.append(ToolCall(name, raw, duration, ok, error))

    # -- finishing -------------------------------------------------------------------------

    @property
    def stdout(self) -> str:
        return "".join(self._out["stdout"]) + (self._marker() if self.truncated else "")

    @property
    def stderr(self) -> str:
        return "".join(self._out["stderr"])

    def _marker(self) -> str:
        return OUTPUT_MARKER.format(limit=self._max_output)

    def _finish_with_value(self, tree: Any) -> Finish:
        try:
            value = codec.decode(tree)
        except codec.CodecError as exc:
            raise ProtocolError(f"the child sent an undecodable result: {exc}") from None
        return Finish(value=value)

    def build_execution(self, value: Any, *, duration: float) -> Execution:
        with self._lock:
            records = tuple(self._records)
        return Execution(value, self.stdout, self.stderr, records, duration, self.truncated)

    def _error_from(self, message: dict[str, Any]) -> SecurePyError:
        type_name = message["type"][:200]
        text = self._sanitize(message["message"])
        limit = message.get("limit")
        if limit in _LIMIT_NAMES:
            return ResourceLimitError(
                f"the code hit the {limit} limit: {type_name}: {text}"[:2000],
                limit=limit, state_kept=True,
            )
        return ExecutionError(
            type_name, text, traceback=self._sanitize(message["traceback"]),
            stdout=self.stdout, stderr=self.stderr,
        )


_LIMIT_NAMES = {"memory", "cpu_seconds", "file_size", "processes", "open_files", "workspace",
                "output"}


def error_reply(call_id: int, type_name: str, text: str, *, kind: str = "tool") -> dict[str, Any]:
    """A ``tool_result`` frame that raises ToolError (or PolicyError) inside the sandbox."""
    return {"kind": "tool_result", "call_id": call_id, "ok": False,
            "error": {"type": type_name, "message": text, "kind": kind}}


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


def _approximate_size(tree: Any) -> int:
    if isinstance(tree, str):
        return len(tree)
    if isinstance(tree, dict):
        return sum(_approximate_size(v) for v in tree.values())
    if isinstance(tree, list):
        return sum(_approximate_size(v) for v in tree)
    return 8
