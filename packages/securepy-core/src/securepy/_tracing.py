"""OpenTelemetry spans for session starts, executes and tool calls (the ``otel`` extra).

securepy never imports OpenTelemetry itself: an application that traces has already imported
``opentelemetry.trace`` to install its tracer provider, and one that has not cannot have a
provider to send spans to. So while ``opentelemetry.trace`` is not in ``sys.modules``, or
while the global provider is still OpenTelemetry's no-op proxy, every function here returns
at once and no span is built: tracing costs nothing unless a backend is listening.

Spans, named after OpenTelemetry's semantic conventions for generative AI where they fit:

- ``securepy.session.start``: one per child started (first start and restarts), from the
  launch to the child's ready message, under the span current where the session started.
- ``securepy.execute``: one per ``execute``, under the caller's current span: the code's
  length and SHA-256 (the code itself only with ``trace_content``), the outcome, the limit
  hit, the duration and the number of tool calls.
- ``execute_tool {name}`` (``gen_ai.operation.name = "execute_tool"``): one per tool call
  that runs, under its execute's span; the tool function runs with it as the current span,
  so the tool's own spans nest under it. A call the host refuses (no such tool, invalid
  arguments, a policy: caps, approval) gets one too, ended at once with the outcome
  ``refused`` or ``invalid`` and the error's type; at most :data:`MAX_REFUSED_SPANS` per
  execute (a hostile child can send a million refused calls: the rest are only counted, in
  the execute span's ``securepy.tool.refused_calls``).

Attribute values come from the host's own view (lengths, hashes, names of registered tools,
outcomes), or are truncated, so a hostile child cannot inflate what an exporter receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import reprlib
import sys
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import (
    CodeValidationError,
    ExecutionError,
    ExecutionTimeout,
    PolicyError,
    ProtocolError,
    ResourceLimitError,
    SessionClosedError,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from ._execution import Execution
    from ._tools import Tool

__all__ = [
    "current_tracer",
    "end_execute_span",
    "end_tool_span",
    "record_refused_tool_call",
    "record_session_start",
    "span_made_current",
    "start_execute_span",
    "start_tool_span",
]

TRACER_NAME = "securepy"
# Longest text put in one attribute (descriptions, the code or arguments when asked for).
MAX_ATTRIBUTE_CHARS = 4096
# Refused tool calls cost the host nothing but a reply: their spans must not cost more.
MAX_REFUSED_SPANS = 100

_cached: tuple[object, Tracer] | None = None


def current_tracer() -> Tracer | None:
    """The tracer to use now, or None when no OpenTelemetry tracer provider is installed."""
    global _cached
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    tracer: Tracer = provider.get_tracer(TRACER_NAME, _version())
    _cached = (provider, tracer)
    return tracer


def _version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("securepy-core")
    except metadata.PackageNotFoundError:  # run from a source tree
        return None


def record_session_start(
    session_id: str,
    *,
    pid: int,
    sandboxed: bool,
    started_ns: int,
    restart_reason: str | None = None,
) -> None:
    """A span for a child that has started (its start time is when the launch began)."""
    tracer = current_tracer()
    if tracer is None:
        return
    attributes: dict[str, Any] = {
        "securepy.session.id": session_id,
        "securepy.sandbox": sandboxed,
        "process.pid": pid,
    }
    if restart_reason is not None:
        attributes["securepy.restart_reason"] = restart_reason[:MAX_ATTRIBUTE_CHARS]
    span = tracer.start_span("securepy.session.start", start_time=started_ns, attributes=attributes)
    span.end()


def start_execute_span(session_id: str, code: str, *, record_code: bool = False) -> Span | None:
    """Open the span of one execute under the caller's current span (None: not tracing)."""
    tracer = current_tracer()
    if tracer is None:
        return None
    attributes: dict[str, Any] = {
        "securepy.session.id": session_id,
        "securepy.code.length": len(code),
        "securepy.code.sha256": hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest(),
    }
    if record_code:
        attributes["securepy.code"] = _truncate(code)
    return tracer.start_span("securepy.execute", attributes=attributes)


def end_execute_span(
    span: Span | None,
    *,
    execution: Execution | None = None,
    error: BaseException | None = None,
    duration: float | None = None,
    refused_calls: int = 0,
) -> None:
    """Close an execute's span with its outcome: ``execution`` on success, else ``error``;
    ``refused_calls``: how many tool calls the host refused (each has a span of its own, up
    to :data:`MAX_REFUSED_SPANS`)."""
    if span is None:
        return
    outcome, limit = _outcome(execution, error)
    span.set_attribute("securepy.outcome", outcome)
    if limit is not None:
        span.set_attribute("securepy.limit", limit)
    if duration is not None:
        span.set_attribute("securepy.duration", duration)
    if execution is not None:
        span.set_attribute("securepy.tool_calls", len(execution.tool_calls))
    if refused_calls:
        span.set_attribute("securepy.tool.refused_calls", refused_calls)
    if error is not None:
        _mark_failed(span, error)
    span.end()


def start_tool_span(
    parent: Span | None,
    tool: Tool,
    *,
    call_id: int,
    arguments: Mapping[str, Any],
    record_arguments: bool = False,
) -> Span | None:
    """Open the span of one tool call under its execute's span (None: not tracing).

    ``parent`` is passed explicitly because tool functions run in other threads (and tasks)
    than the execute that asked for them.
    """
    if parent is None:
        return None
    tracer = current_tracer()
    if tracer is None:
        return None
    try:
        attributes = _tool_attributes(tool.name, call_id, tool.description)
        attributes["securepy.tool.arguments_size"] = approximate_size(arguments)
        if record_arguments:
            attributes["gen_ai.tool.call.arguments"] = _truncate(_arguments_repr(arguments))
        return _start_under(tracer, parent, f"execute_tool {tool.name}", attributes)
    except Exception:  # tracing never keeps a call from running and being answered
        return None


class _BoundedRepr(reprlib.Repr):
    """A repr whose cost is bounded whatever the child sent (reprlib's size limits), which
    never raises on an int past Python's int-to-str digit limit."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 1024:
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_ARGUMENTS_REPR = _BoundedRepr()
_ARGUMENTS_REPR.maxstring = _ARGUMENTS_REPR.maxother = 1000
_ARGUMENTS_REPR.maxdict = _ARGUMENTS_REPR.maxlist = _ARGUMENTS_REPR.maxtuple = 50


def _arguments_repr(arguments: Mapping[str, Any]) -> str:
    try:
        return _ARGUMENTS_REPR.repr(dict(arguments))
    except Exception as exc:  # a tracing attribute never stops a call
        return f"<arguments (repr failed: {type(exc).__name__})>"


def record_refused_tool_call(
    parent: Span | None,
    name: str,
    *,
    call_id: int,
    type_name: str,
    reason: str,
    tool: Tool | None = None,
) -> None:
    """One span, ended at once, for a tool call the host refused before running anything:
    ``type_name`` is ``ToolError`` (no such tool), ``ValidationError`` (the arguments) or
    ``PolicyError`` (a cap or the approval hook). ``name`` may be the child's own text (an
    unknown tool): it is cut short."""
    if parent is None:
        return
    tracer = current_tracer()
    if tracer is None:
        return
    from opentelemetry.trace import Status, StatusCode

    name = name[:100]
    attributes = _tool_attributes(name, call_id, tool.description if tool is not None else "")
    attributes["securepy.outcome"] = "invalid" if type_name == "ValidationError" else "refused"
    attributes["error.type"] = type_name
    attributes["securepy.refusal"] = _truncate(reason)
    span = _start_under(tracer, parent, f"execute_tool {name}", attributes)
    span.set_status(Status(StatusCode.ERROR, type_name))
    span.end()


def _tool_attributes(name: str, call_id: int, description: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": str(call_id),
    }
    if description:
        attributes["gen_ai.tool.description"] = _truncate(description)
    return attributes


def _start_under(tracer: Tracer, parent: Span, name: str, attributes: dict[str, Any]) -> Span:
    from opentelemetry import trace

    return tracer.start_span(
        name,
        context=trace.set_span_in_context(parent),
        kind=trace.SpanKind.INTERNAL,
        attributes=attributes,
    )


def end_tool_span(
    span: Span | None,
    *,
    error: BaseException | None = None,
    timed_out: bool = False,
    duration: float | None = None,
) -> None:
    """Close a tool call's span: ``ok``, ``error`` (the tool raised) or ``timeout``."""
    if span is None:
        return
    outcome = "timeout" if timed_out else ("error" if error is not None else "ok")
    span.set_attribute("securepy.outcome", outcome)
    if duration is not None:
        span.set_attribute("securepy.duration", duration)
    if error is not None:
        _mark_failed(span, error)
    span.end()


@contextlib.contextmanager
def span_made_current(span: Span | None) -> Iterator[None]:
    """Run the block with ``span`` as the current span (in this thread or task), so spans the
    block opens (a tool's own) nest under it. Does nothing for None."""
    if span is None:
        yield
        return
    from opentelemetry import context, trace

    token = context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        context.detach(token)


def now_ns() -> int:
    """Wall-clock nanoseconds, the time base OpenTelemetry spans use."""
    return time.time_ns()


def approximate_size(value: Any, budget: int = 10_000) -> int:
    """Roughly how big ``value`` is (characters of text, bytes of binary, 8 per other leaf),
    visiting at most ``budget`` items so a huge argument costs bounded time."""
    total = 0
    stack = [value]
    while stack and budget > 0:
        budget -= 1
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        else:
            total += 8
    return total


def _outcome(execution: Execution | None, error: BaseException | None) -> tuple[str, str | None]:
    if error is None:
        truncated = execution is not None and execution.truncated
        return "ok", "output" if truncated else None
    if isinstance(error, ExecutionError) and error.type_name == "KeyboardInterrupt":
        return "interrupted", None  # interrupt() (or code that raised it itself)
    if isinstance(error, asyncio.CancelledError):
        return "cancelled", None
    for kind, outcome in _OUTCOMES:
        if isinstance(error, kind):
            limit = getattr(error, "limit", None) if kind is ResourceLimitError else None
            if kind is ExecutionTimeout:
                limit = "timeout"
            return outcome, limit
    return "abandoned", None


_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (ExecutionTimeout, "timeout"),
    (ResourceLimitError, "limit"),
    (ExecutionError, "error"),
    (CodeValidationError, "invalid"),
    (PolicyError, "refused"),
    (SessionClosedError, "closed"),
    (ProtocolError, "protocol_error"),
)


def _mark_failed(span: Span, error: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    kind = type(error)
    span.set_attribute("error.type", f"{kind.__module__}.{kind.__qualname__}")
    type_name = getattr(error, "type_name", None)
    if isinstance(type_name, str):  # the code's own exception class, as the child named it
        span.set_attribute("securepy.error.type", type_name[:200])
    span.set_status(Status(StatusCode.ERROR, kind.__name__))


def _truncate(text: str) -> str:
    if len(text) <= MAX_ATTRIBUTE_CHARS:
        return text
    return text[:MAX_ATTRIBUTE_CHARS] + f"...[{len(text) - MAX_ATTRIBUTE_CHARS} more]"
