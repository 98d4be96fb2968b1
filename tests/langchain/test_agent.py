"""create_agent with a scripted chat model: the sandbox tool over several steps, sync and async."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import securepy
from langchain.agents import create_agent
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field
from securepy_langchain import SecurePyTool, securepy_tool


class ScriptedChatModel(GenericFakeChatModel):
    """Replies from a script, and records the tools the agent bound it with."""

    bound_tools: list[dict[str, Any]] = Field(default_factory=list)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        self.bound_tools[:] = [convert_to_openai_tool(item) for item in tools]
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


async def _run_agent(
    model: ScriptedChatModel, sandbox: SecurePyTool, twin: str, question: str
) -> list[BaseMessage]:
    agent = create_agent(model, tools=[sandbox], system_prompt="Answer with Python.")
    messages_in: list[AnyMessage | dict[str, Any]] = [HumanMessage(question)]
    result = (
        agent.invoke({"messages": messages_in})
        if twin == "sync"
        else await agent.ainvoke({"messages": messages_in})
    )
    messages: list[BaseMessage] = result["messages"]
    return messages


def _tool_results(messages: list[BaseMessage]) -> list[tuple[str, str]]:
    return [
        (m.status, re.sub(r"<cell-\d+>", "<cell>", str(m.content)))
        for m in messages
        if isinstance(m, ToolMessage)
    ]


TWINS = pytest.mark.parametrize("twin", ["sync", "async"])


@pytest.fixture
def orders_file(tmp_path: Path) -> Path:
    """A file only the host can read."""
    path = tmp_path / "orders.csv"
    with path.open("w", newline="") as file:
        csv.writer(file).writerows(
            [("id", "total"), ("A1", "12.5"), ("A2", "30.0"), ("A3", "15.0")]
        )
    return path


# LangGraph runs sync tools in short-lived executor threads: the sandbox started in one of
# them must survive that thread (bubblewrap's --die-with-parent watches the forking thread).
@pytest.mark.sandbox
@pytest.mark.parametrize("twin", ["sync", "async"])
async def test_code_reads_host_data_through_a_langchain_tool_and_keeps_state(
    twin: str, orders_file: Path
) -> None:
    @tool
    def read_orders() -> list[dict[str, Any]]:
        """All orders, from the host's order file."""
        with orders_file.open(newline="") as file:
            return [{"id": row["id"], "total": float(row["total"])} for row in csv.DictReader(file)]

    step_one = (
        f"try:\n    open({str(orders_file)!r}).read()\n    direct = 'readable'\n"
        "except OSError as exc:\n    direct = type(exc).__name__\n"
        "orders = read_orders()\nprint(direct, len(orders))"
    )
    step_two = "sum(order['total'] for order in orders)"
    model = _script(step_one, step_two, answer="The three orders total 57.5.")
    sandbox = securepy_tool(tools=[read_orders], timeout=30)
    try:
        messages = await _run_agent(model, sandbox, twin, "What do all orders add up to?")
    finally:
        sandbox.close()

    assert _tool_results(messages) == [("success", "FileNotFoundError 3"), ("success", "57.5")]
    assert messages[-1].content == "The three orders total 57.5."
    [bound] = model.bound_tools
    assert bound["function"]["description"].endswith(
        "\n\ndef read_orders() -> list[dict[str, Any]]:\n"
        '    """All orders, from the host\'s order file."""'
    )


@TWINS
async def test_errors_timeouts_and_denials_come_back_and_the_agent_continues(twin: str) -> None:
    refunded: list[str] = []
    refund = securepy.Tool(
        "refund",
        "Refund an order.",
        refunded.append,
        args={"order_id": str},
        approve=lambda call: "denied",
    )
    model = _script(
        "total = 1 / 0",
        "while True:\n    pass",
        "refund('A1')",
        "try:\n    refund('A1')\nexcept PolicyError as exc:\n    reason = str(exc)\nreason",
        answer="I could not refund A1: the refund was denied.",
    )
    sandbox = securepy_tool(tools=[refund], timeout=0.5, sandbox=False)
    try:
        messages = await _run_agent(model, sandbox, twin, "Refund order A1.")
    finally:
        sandbox.close()

    assert _tool_results(messages) == [
        (
            "error",
            'Traceback (most recent call last):\n  File "<cell>", line 1, in <module>\n'
            "    total = 1 / 0\n             ~~^~~\nZeroDivisionError: division by zero",
        ),
        (
            "error",
            "Error: execution timed out after 0.5 s: the code was interrupted; the "
            "session kept its state",
        ),
        (
            "error",
            'Traceback (most recent call last):\n  File "<cell>", line 1, in <module>\n'
            "    refund('A1')\n  File \"<securepy tool refund>\", line 2, in refund\n"
            "securepy_tools.PolicyError: denied",
        ),
        ("success", "'denied'"),
    ]
    assert messages[-1].content == "I could not refund A1: the refund was denied."
    assert refunded == []
