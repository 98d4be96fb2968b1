"""OpenTelemetry spans: silent without a tracer provider, and named after the gen-AI
conventions with one."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import securepy
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from securepy import _tracing
from securepy._execution import Execution
from securepy.errors import ExecutionError, ExecutionTimeout, ResourceLimitError


def _lookup(tool_name: str) -> securepy.Tool:
    def lookup(order_id: str) -> str:
        return order_id

    return securepy.Tool(tool_name, "Look an order up.", lookup)


def _by_name(spans: Any) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans.get_finished_spans()}


def test_no_tracer_without_opentelemetry_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "opentelemetry.trace")
    assert _tracing.current_tracer() is None
    assert _tracing.start_execute_span("s1", "1 + 1") is None
    _tracing.end_execute_span(None, error=ValueError("ignored"))  # None spans are no-ops
    with _tracing.span_made_current(None):
        pass


def test_no_tracer_while_the_provider_is_the_default_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert _tracing.current_tracer() is None


def test_import_and_run_do_not_import_opentelemetry() -> None:
    script = textwrap.dedent("""
        import sys
        import securepy
        def size(text: str) -> int:
            return len(text)
        with securepy.Session(sandbox=False, tools=[size]) as session:
            assert session.execute("size('abc')").value == 3
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_execute_span_names_code_by_length_and_hash_only(spans: Any) -> None:
    with trace.get_tracer("test").start_as_current_span("agent") as agent:
        span = _tracing.start_execute_span("s1", "x = 'secret'")
    _tracing.end_execute_span(
        span, execution=Execution(None, "", "", (), 0.25, False), duration=0.25
    )
    execute = _by_name(spans)["securepy.execute"]
    assert execute.parent is not None
    assert execute.parent.span_id == agent.get_span_context().span_id
    assert dict(execute.attributes or {}) == {
        "securepy.session.id": "s1",
        "securepy.code.length": 12,
        "securepy.code.sha256": _sha256("x = 'secret'"),
        "securepy.outcome": "ok",
        "securepy.duration": 0.25,
        "securepy.tool_calls": 0,
    }
    assert execute.status.status_code == trace.StatusCode.UNSET


def test_code_is_recorded_only_when_asked(spans: Any) -> None:
    span = _tracing.start_execute_span("s1", "print(1)", record_code=True)
    _tracing.end_execute_span(span, execution=Execution(None, "1\n", "", (), 0.1, False))
    assert _by_name(spans)["securepy.execute"].attributes["securepy.code"] == "print(1)"


@pytest.mark.parametrize(
    ("error", "outcome", "limit", "error_type"),
    [
        (ExecutionError("ValueError", "boom"), "error", None, "securepy.errors.ExecutionError"),
        (
            ExecutionTimeout(1.0, state_kept=True),
            "timeout",
            "timeout",
            "securepy.errors.ExecutionTimeout",
        ),
        (
            ResourceLimitError("memory", limit="memory"),
            "limit",
            "memory",
            "securepy.errors.ResourceLimitError",
        ),
        (KeyboardInterrupt(), "abandoned", None, "builtins.KeyboardInterrupt"),
        (
            ExecutionError("KeyboardInterrupt", "stopped"),
            "interrupted",
            None,
            "securepy.errors.ExecutionError",
        ),
        (asyncio.CancelledError(), "cancelled", None, "asyncio.exceptions.CancelledError"),
    ],
    ids=["error", "timeout", "limit", "abandoned", "interrupted", "cancelled"],
)
def test_execute_span_outcome(
    spans: Any, error: BaseException, outcome: str, limit: str | None, error_type: str
) -> None:
    span = _tracing.start_execute_span("s1", "code")
    _tracing.end_execute_span(span, error=error, duration=1.0)
    execute = _by_name(spans)["securepy.execute"]
    attributes = dict(execute.attributes or {})
    assert attributes["securepy.outcome"] == outcome
    assert attributes.get("securepy.limit") == limit
    assert attributes["error.type"] == error_type
    assert execute.status.status_code == trace.StatusCode.ERROR


def test_tool_span_follows_the_gen_ai_conventions_and_parents_the_tools_own_spans(
    spans: Any,
) -> None:
    execute = _tracing.start_execute_span("s1", "lookup('A-1')")
    tool_span = _tracing.start_tool_span(
        execute, _lookup("lookup"), call_id=3, arguments={"order_id": "A-1"}
    )
    with (
        _tracing.span_made_current(tool_span),
        trace.get_tracer("tool").start_as_current_span("database query"),
    ):
        pass
    _tracing.end_tool_span(tool_span, duration=0.5)
    _tracing.end_execute_span(execute, execution=Execution("A-1", "", "", (), 1.0, False))

    found = _by_name(spans)
    call = found["execute_tool lookup"]
    assert call.kind == trace.SpanKind.INTERNAL
    assert dict(call.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "lookup",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "3",
        "gen_ai.tool.description": "Look an order up.",
        "securepy.tool.arguments_size": len("order_id") + len("A-1"),
        "securepy.outcome": "ok",
        "securepy.duration": 0.5,
    }
    assert call.parent is not None
    assert call.parent.span_id == found["securepy.execute"].context.span_id
    own = found["database query"]
    assert own.parent is not None and own.parent.span_id == call.context.span_id


def test_tool_span_of_a_failed_call(spans: Any) -> None:
    with trace.get_tracer("test").start_as_current_span("execute") as execute:
        span = _tracing.start_tool_span(execute, _lookup("lookup"), call_id=1, arguments={})
    _tracing.end_tool_span(span, error=KeyError("A-9"))
    call = _by_name(spans)["execute_tool lookup"]
    assert call.attributes["securepy.outcome"] == "error"
    assert call.attributes["error.type"] == "builtins.KeyError"
    assert call.status.status_code == trace.StatusCode.ERROR


def test_session_start_span_starts_when_the_launch_began(spans: Any) -> None:
    started = _tracing.now_ns()
    _tracing.record_session_start("s1", pid=1234, sandboxed=True, started_ns=started)
    start = _by_name(spans)["securepy.session.start"]
    assert start.start_time == started
    assert dict(start.attributes or {}) == {
        "securepy.session.id": "s1",
        "securepy.sandbox": True,
        "process.pid": 1234,
    }


def test_argument_size_is_bounded_for_huge_arguments() -> None:
    huge = {"rows": [[1, "ab"]] * 1_000_000}
    size = _tracing.approximate_size(huge)
    assert 0 < size < 10_000 * 8


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


# -- sessions and pools --------------------------------------------------------------------


@securepy.tool
def lookup(order_id: str) -> str:
    """Status of an order."""
    with trace.get_tracer("app").start_as_current_span("orders db"):
        return f"{order_id}: shipped"


def explode() -> None:
    """Always fails."""
    raise KeyError("gone")


def _check_one_traced_execute(spans: Any, caller: Any) -> None:
    found = _by_name(spans)
    execute = found["securepy.execute"]
    assert execute.parent is not None
    assert execute.parent.span_id == caller.get_span_context().span_id
    attributes = dict(execute.attributes or {})
    assert attributes["securepy.outcome"] == "ok"
    assert attributes["securepy.tool_calls"] == 1
    assert attributes["securepy.code.length"] == len(_CODE)
    call = found["execute_tool lookup"]
    assert call.parent is not None and call.parent.span_id == execute.context.span_id
    assert call.attributes["gen_ai.tool.name"] == "lookup"
    assert call.attributes["securepy.outcome"] == "ok"
    own = found["orders db"]
    assert own.parent is not None and own.parent.span_id == call.context.span_id


_CODE = "lookup('A-1')"


def test_spans_of_a_session_nest_under_the_callers(twin: Any, spans: Any) -> None:
    with trace.get_tracer("app").start_as_current_span("agent step") as step:
        session = twin(tools=[lookup])
        assert session.execute(_CODE).value == "A-1: shipped"
    _check_one_traced_execute(spans, step)
    start = _by_name(spans)["securepy.session.start"]
    assert start.attributes["securepy.session.id"] == session.inner.id
    assert start.attributes["securepy.sandbox"] is False
    assert start.parent is not None and start.parent.span_id == step.get_span_context().span_id


def test_failures_are_told_on_the_spans(twin: Any, spans: Any) -> None:
    session = twin(tools=[explode])
    with pytest.raises(securepy.ExecutionError):
        session.execute("explode()")
    with pytest.raises(securepy.ExecutionTimeout):
        session.execute("while True:\n    pass", timeout=0.3)
    executes = [s for s in spans.get_finished_spans() if s.name == "securepy.execute"]
    assert [
        (s.attributes["securepy.outcome"], s.attributes.get("securepy.limit")) for s in executes
    ] == [("error", None), ("timeout", "timeout")]
    call = _by_name(spans)["execute_tool explode"]
    assert call.attributes["securepy.outcome"] == "error"
    assert call.attributes["error.type"] == "builtins.KeyError"


def test_content_is_traced_only_when_asked(twin: Any, spans: Any) -> None:
    session = twin(tools=[lookup], trace_content=True)
    session.execute(_CODE)
    found = _by_name(spans)
    assert found["securepy.execute"].attributes["securepy.code"] == _CODE
    assert found["execute_tool lookup"].attributes["gen_ai.tool.call.arguments"] == (
        "{'order_id': 'A-1'}"
    )


@securepy.tool
def bits(n: int) -> int:
    """Bits of n."""
    return n.bit_length()


def test_traced_arguments_too_large_for_repr_still_answer_the_call(twin: Any,
                                                                     spans: Any) -> None:
    """An int past Python's int-to-str limit used to raise in the span's repr, before the
    tool ran: the call was never answered."""
    session = twin(tools=[bits], trace_content=True)
    assert session.execute("bits(10**5000)").value == 16610
    found = _by_name(spans)["execute_tool bits"].attributes["gen_ai.tool.call.arguments"]
    assert found == "{'n': <int of 16610 bits>}"
    assert session.execute("bits(12345)").value == 14  # control: a small int as it is
    texts = [s.attributes.get("gen_ai.tool.call.arguments") for s in spans.get_finished_spans()]
    assert "{'n': 12345}" in texts


def test_spans_of_a_pool_execute(spans: Any) -> None:
    with (
        securepy.SessionPool(1, tools=[lookup], sandbox=False) as pool,
        trace.get_tracer("app").start_as_current_span("agent step") as step,
    ):
        pool.execute(_CODE)
    _check_one_traced_execute(spans, step)


async def test_spans_of_an_async_pool_execute(spans: Any) -> None:
    async with securepy.AsyncSessionPool(1, tools=[lookup], sandbox=False) as pool:
        with trace.get_tracer("app").start_as_current_span("agent step") as step:
            await pool.execute(_CODE)
    _check_one_traced_execute(spans, step)


def limited() -> str:
    """Callable once per execute."""
    return "ok"


def test_refused_tool_calls_get_spans_of_their_own(twin: Any, spans: Any) -> None:
    once = securepy.Tool("limited", "Callable once per execute.", limited, max_calls=1)
    session = twin(tools=[lookup, once])
    code = """
results = []
for attempt in (lambda: call_tool('nope'), lambda: lookup(order_id=5),
                lambda: limited(), lambda: limited()):
    try:
        results.append(attempt())
    except Exception as exc:
        results.append(type(exc).__name__)
results
"""
    # Invalid arguments come back inside as a ToolError too (its message names the problem).
    assert session.execute(code).value == ["ToolError", "ToolError", "ok", "PolicyError"]
    calls = [s for s in spans.get_finished_spans() if s.name.startswith("execute_tool ")]
    execute = _by_name(spans)["securepy.execute"]
    assert all(c.parent is not None and c.parent.span_id == execute.context.span_id
               for c in calls)
    refused = [(c.name, c.attributes["securepy.outcome"], c.attributes["error.type"])
               for c in calls if c.status.status_code == trace.StatusCode.ERROR]
    assert refused == [
        ("execute_tool nope", "refused", "ToolError"),
        ("execute_tool lookup", "invalid", "ValidationError"),
        ("execute_tool limited", "refused", "PolicyError"),
    ]
    ran = [c for c in calls if c.status.status_code != trace.StatusCode.ERROR]
    assert [c.name for c in ran] == ["execute_tool limited"]  # the control: it ran once
    assert execute.attributes["securepy.tool.refused_calls"] == 3


def test_refused_call_spans_are_capped_per_execute(spans: Any) -> None:
    with securepy.Session(sandbox=False, tools=[lookup]) as session:
        session.execute(
            "for _ in range(300):\n"
            "    try:\n        call_tool('nope' * 1000)\n"
            "    except Exception:\n        pass"
        )
    calls = [s for s in spans.get_finished_spans() if s.name.startswith("execute_tool ")]
    assert len(calls) == _tracing.MAX_REFUSED_SPANS
    assert all(len(c.name) <= len("execute_tool ") + 100 for c in calls)
    execute = _by_name(spans)["securepy.execute"]
    assert execute.attributes["securepy.tool.refused_calls"] == 300
