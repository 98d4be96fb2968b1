"""A LlamaIndex FunctionAgent that answers by writing Python in the securepy sandbox.

The orders live in a file only the host can read. The model's code cannot open it, but it can
call ``read_orders``, a LlamaIndex FunctionTool that runs on the host, and keep the result in
the session for the next step. One step fails on purpose: the agent reads the error and
carries on.

Runs offline: a scripted ``MockFunctionCallingLLM`` plays the model (llama-index-core 0.14.12
or later has it; the adapter itself works from 0.14.10). The code runs in the
bubblewrap sandbox; set SECUREPY_SANDBOX=0 to run it unsandboxed, explicitly.
Run: ``uv run python examples/llamaindex_agent.py``
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ToolCallBlock
from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool
from securepy_llamaindex import SecurePyToolSpec

ORDERS = [
    {"id": "A1", "customer": "ann", "total": 12.5},
    {"id": "A2", "customer": "bob", "total": 30.0},
    {"id": "A3", "customer": "ann", "total": 15.0},
]
ANSWER = "Ann's orders total 27.5 euros."


def code_steps(orders_file: Path) -> list[str]:
    """The code the scripted model writes, one step per turn."""
    return [
        f"""\
try:
    open({str(orders_file)!r}).read()
    print("the sandbox read the host file!")
except OSError as exc:
    print("direct read blocked:", type(exc).__name__)
orders = read_orders()
print(len(orders), "orders")
""",
        "orders['A9']",  # a mistake: orders is a list; the model reads the TypeError
        "sum(o['total'] for o in orders if o['customer'] == 'ann')",
    ]


def orders_tool(orders_file: Path) -> FunctionTool:
    """``read_orders`` as a LlamaIndex tool; it runs on the host, which can read the file."""

    def read_orders() -> list[dict[str, Any]]:
        """All orders of the shop: id, customer and total."""
        return list(json.loads(orders_file.read_text()))

    return FunctionTool.from_defaults(read_orders)


def scripted_model(steps: list[str]) -> MockFunctionCallingLLM:
    """Plays the model: one code step per turn, then the answer."""

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        turn = sum(1 for m in messages if m.role == MessageRole.TOOL)
        if turn < len(steps):
            return ChatMessage(role="assistant", blocks=[ToolCallBlock(
                tool_call_id=f"call-{turn}", tool_name="run_python",
                tool_kwargs={"code": steps[turn]})])
        return ChatMessage(role="assistant", content=ANSWER)

    return MockFunctionCallingLLM(response_generator=respond)


async def main() -> None:
    """Run the agent offline and print each step it took."""
    sandbox = os.environ.get("SECUREPY_SANDBOX", "1") != "0"
    with tempfile.TemporaryDirectory(prefix="securepy-example-") as tmp:
        orders_file = Path(tmp) / "orders.json"
        orders_file.write_text(json.dumps(ORDERS))
        with SecurePyToolSpec(tools=[orders_tool(orders_file)],
                              sandbox=sandbox, timeout=20) as spec:
            agent = FunctionAgent(tools=spec.to_tool_list(),
                                  llm=scripted_model(code_steps(orders_file)))
            handler = agent.run(user_msg="What do ann's orders total?")
            async for event in handler.stream_events():
                if isinstance(event, ToolCallResult):
                    status = "error" if event.tool_output.is_error else "ok"
                    print(f"--- {event.tool_name} ({status}) ---")
                    print(event.tool_output.content)
            answer = await handler
    print(f"answer: {answer}")


if __name__ == "__main__":
    asyncio.run(main())
