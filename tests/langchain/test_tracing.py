"""A LangChain agent traced with OpenTelemetry: the sandbox's spans sit under the agent's, and
a tool's own spans under its call's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import tool
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from securepy_langchain import securepy_tool


class ScriptedChatModel(GenericFakeChatModel):
    """Replies from a script; binding tools changes nothing."""

    def bind_tools(
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self


def _script(*codes: str, answer: str) -> ScriptedChatModel:
    steps: list[AIMessage | str] = [
        AIMessage(
            "",
            tool_calls=[
                {
                    "name": "run_python",
                    "args": {"code": code},
                    "id": f"call_{number}",
                    "type": "tool_call",
                }
            ],
        )
        for number, code in enumerate(codes, start=1)
    ]
    return ScriptedChatModel(messages=iter([*steps, answer]))


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


@pytest.mark.parametrize("twin", ["sync", "async"])
async def test_sandbox_spans_nest_under_the_agent_run(twin: str, spans: Any) -> None:
    @tool
    def read_orders() -> list[float]:
        """Order totals, from the host's database."""
        with trace.get_tracer("app").start_as_current_span("orders query"):
            return [12.5, 30.0, 15.0]

    model = _script("totals = read_orders()", "sum(totals)", answer="57.5 in all.")
    sandbox = securepy_tool(tools=[read_orders], sandbox=False, timeout=30)
    agent = create_agent(model, tools=[sandbox])
    request: dict[str, Any] = {"messages": [HumanMessage("What do the orders add up to?")]}
    try:
        with trace.get_tracer("app").start_as_current_span("agent run"):
            result = agent.invoke(request) if twin == "sync" else await agent.ainvoke(request)
    finally:
        sandbox.close()
    assert result["messages"][-1].content == "57.5 in all."

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    by_id = {span.context.span_id: span for span in finished}
    executes = [span for span in finished if span.name == "securepy.execute"]
    assert [span.attributes["securepy.outcome"] for span in executes] == ["ok", "ok"]
    for execute in executes:
        assert _ancestors(execute, by_id)[-1] == "agent run"
    [call] = [span for span in finished if span.name == "execute_tool read_orders"]
    assert _ancestors(call, by_id)[0] == "securepy.execute"
    assert call.attributes["gen_ai.tool.name"] == "read_orders"
    [query] = [span for span in finished if span.name == "orders query"]
    assert _ancestors(query, by_id)[:2] == ["execute_tool read_orders", "securepy.execute"]
    assert _ancestors(query, by_id)[-1] == "agent run"
