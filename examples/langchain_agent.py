"""A LangChain agent that answers questions by writing Python in the securepy sandbox.

The orders live in a file only the host can read. The model's code cannot open it, but it can
call ``read_orders``, a LangChain tool that runs on the host, and keep the result in the
session for the next step. Refunds go through a host tool whose approve hook denies large
ones; the denial comes back to the model as a tool error and the agent carries on.

Runs offline with a scripted model; with a real ``ChatOpenAI`` when OPENAI_API_KEY is set
(OPENAI_MODEL picks the model). Run: ``uv run python examples/langchain_agent.py``
"""

from __future__ import annotations

import asyncio
import csv
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import securepy
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from securepy_langchain import securepy_tool

QUESTION = "Refund every order of customer ann that is under 20 euros, and try A2 as well."

STEP_ONE = """\
try:
    open(ORDERS_FILE).read()
    print("the sandbox read the host file!")
except OSError as exc:
    print("direct read blocked:", type(exc).__name__)
orders = read_orders()
print(len(orders), "orders")
"""
STEP_TWO = "refund('A2', 30.0)"
STEP_THREE = """\
small = [o for o in orders if o['customer'] == 'ann' and o['total'] < 20]
[refund(o['id'], o['total']) for o in small]
"""


class ScriptedChatModel(GenericFakeChatModel):
    """Plays the model offline: replies from a fixed script."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self


def scripted_model(orders_file: Path) -> BaseChatModel:
    steps = [STEP_ONE.replace("ORDERS_FILE", repr(str(orders_file))), STEP_TWO, STEP_THREE]
    replies: list[AIMessage | str] = [
        AIMessage("", tool_calls=[{"name": "run_python", "args": {"code": code},
                                   "id": f"call_{n}", "type": "tool_call"}])
        for n, code in enumerate(steps, start=1)]
    replies.append("Refunded A1 (12.5 €). A2 (30 €) was refused: refunds over 20 € need a "
                   "person.")
    return ScriptedChatModel(messages=iter(replies))


def real_model() -> BaseChatModel:
    from langchain_openai import ChatOpenAI  # only needed when a key is set

    return ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))


async def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="securepy-example-"))
    orders_file = workdir / "orders.csv"
    with orders_file.open("w", newline="") as file:
        csv.writer(file).writerows([("id", "customer", "total"), ("A1", "ann", "12.5"),
                                    ("A2", "ann", "30.0"), ("B1", "bo", "8.0")])

    @tool
    def read_orders() -> list[dict[str, Any]]:
        """All orders (id, customer, total in euros) from the shop's order file."""
        with orders_file.open(newline="") as file:
            return [{**row, "total": float(row["total"])} for row in csv.DictReader(file)]

    def small_refunds_only(call: Any) -> bool | str:  # a securepy ToolCallRequest
        return call.arguments["amount"] < 20 or "refunds over 20 € need a person"

    refund = securepy.Tool("refund", "Refund an order (amount in euros).",
                           lambda order_id, amount: f"refunded {order_id}",
                           args={"order_id": str, "amount": float},
                           approve=small_refunds_only)

    offline = not os.environ.get("OPENAI_API_KEY")
    model = scripted_model(orders_file) if offline else real_model()
    run_python = securepy_tool(tools=[read_orders, refund])
    try:
        agent = create_agent(model, tools=[run_python],
                             system_prompt="Answer by running Python with run_python.")
        messages: list[AnyMessage | dict[str, Any]] = [HumanMessage(QUESTION)]
        result = await agent.ainvoke({"messages": messages})
    finally:
        run_python.close()
        orders_file.unlink()
        workdir.rmdir()

    print("model:", "scripted (offline)" if offline else "ChatOpenAI")
    for message in result["messages"]:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                print(f"--- run_python ({call['id']}):\n{call['args']['code'].rstrip()}")
            if message.content:
                print(f"answer: {message.content}")
        elif isinstance(message, ToolMessage):
            print(f"--- result [{message.status}]:\n{message.content}")


if __name__ == "__main__":
    asyncio.run(main())
