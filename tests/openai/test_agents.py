"""securepy_openai.agents: the sandbox as an Agents SDK FunctionTool, and FunctionTools inside."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import securepy
from agents import Agent, FunctionTool, Runner, function_tool, set_tracing_disabled
from agents.items import ToolCallOutputItem
from securepy.adapters import CODE_DESCRIPTION
from securepy_openai.agents import from_agents_tool, securepy_function_tool

from .agents_model import ScriptedModel, assistant_message, function_call


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(False)


@function_tool
def search_orders(customer: str, status: str | None = None, limit: int = 3) -> list[str]:
    """Find a customer's orders.

    Args:
        customer: the customer's name.
        status: only orders with this status.
        limit: most orders returned.
    """
    orders = [f"{customer}-{n}:{status or 'any'}" for n in range(1, 10)]
    return orders[:limit]


def _tool_outputs(result: Any) -> list[str]:
    return [str(item.output) for item in result.new_items if isinstance(item, ToolCallOutputItem)]


def _agent(steps: list[str], tool: FunctionTool) -> tuple[Agent[Any], ScriptedModel]:
    model = ScriptedModel(
        [
            [function_call("run_python", {"code": code}, call_id=f"c{n}")]
            for n, code in enumerate(steps)
        ]
        + [[assistant_message("done")]]
    )
    return Agent(name="analyst", model=model, tools=[tool]), model


@pytest.fixture
def default_loop() -> Iterator[None]:
    """``Runner.run_sync`` runs on the thread's default loop and leaves it open; close it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


async def test_runner_runs_model_code_that_calls_a_converted_agents_tool() -> None:
    async with securepy.AsyncSession(
        tools=[from_agents_tool(search_orders)], sandbox=False
    ) as session:
        tool = securepy_function_tool(session=session)
        agent, model = _agent(
            [
                "print(search_orders('ann', limit=2))",
                "search_orders('bob', status='open', limit=1)",
                "search_orders('cy')",
            ],
            tool,
        )
        result = await Runner.run(agent, "Find orders")
    assert result.final_output == "done"
    assert _tool_outputs(result) == [
        "['ann-1:any', 'ann-2:any']",
        "['bob-1:open']",
        "['cy-1:any', 'cy-2:any', 'cy-3:any']",
    ]
    model.assert_complete()
    sent = model.calls[0].tools[0]
    assert isinstance(sent, FunctionTool) and sent.name == "run_python"
    assert sent.params_json_schema == {
        "type": "object",
        "properties": {"code": {"type": "string", "description": CODE_DESCRIPTION}},
        "required": ["code"],
        "additionalProperties": False,
    }
    # The model reads the argument descriptions @function_tool parsed from the docstring.
    assert sent.description.endswith(
        "\n\ndef search_orders(customer: str, status: str | None = None, limit: int = 3):\n"
        '    """Find a customer\'s orders.\n\n    Args:\n        customer: the customer\'s name.\n'
        "        status: only orders with this status.\n        limit: most orders returned.\n"
        '    """'
    )


@pytest.mark.usefixtures("default_loop")
def test_runner_sync_and_errors_come_back_as_text(session: securepy.Session) -> None:
    tool = securepy_function_tool(session=session, timeout=1)
    agent, _ = _agent(["x = 1\n1/0", "while True: pass", "x"], tool)
    result = Runner.run_sync(agent, "go")
    division, timeout, value = _tool_outputs(result)
    assert division.endswith("ZeroDivisionError: division by zero")
    assert timeout == (
        "Error: execution timed out after 1 s: the code was interrupted; the session kept its state"
    )
    assert value == "1"
    assert result.final_output == "done"


async def test_malformed_arguments_come_back_as_text(session: securepy.Session) -> None:
    tool = securepy_function_tool(session=session)
    model = ScriptedModel(
        [[function_call("run_python", '{"source": 1}', call_id="c1")], [assistant_message("done")]]
    )
    result = await Runner.run(Agent(name="a", model=model, tools=[tool]), "go")
    assert _tool_outputs(result) == [
        'Error: run_python takes one argument, a "code" string, e.g. {"code": "print(1 + 1)"}; '
        "got {'source': 1}."
    ]


def test_from_agents_tool_keeps_optional_parameters_optional() -> None:
    converted = from_agents_tool(search_orders)
    assert converted.name == "search_orders"
    assert converted.description == "Find a customer's orders."
    # The strict schema lists every property as required; nullable ones become optional.
    assert search_orders.params_json_schema["required"] == ["customer", "status", "limit"]
    assert converted.parameters["required"] == ["customer"]
    assert converted.signature() == (
        "search_orders(customer: str, status: str | None = None, limit: int = 3)"
    )
    with securepy.Session(tools=[converted], sandbox=False) as session:
        assert session.execute("search_orders('cy', limit=1)").value == ["cy-1:any"]


@pytest.mark.usefixtures("default_loop")
def test_an_owned_session_ends_when_the_function_tool_is_dropped() -> None:
    # The leak guard fails this test if the session's child outlives the dropped tool.
    tool = securepy_function_tool(sandbox=False)
    agent, _ = _agent(["6 * 7"], tool)
    assert _tool_outputs(Runner.run_sync(agent, "go")) == ["42"]
    del agent, tool


async def test_from_agents_tool_passes_a_tool_context_and_the_json_arguments() -> None:
    seen: list[tuple[str, str, str]] = []

    async def invoke(context: Any, arguments: str) -> str:
        seen.append((context.tool_name, context.tool_arguments, arguments))
        return "ok"

    raw = FunctionTool(
        name="ping",
        description="Ping.",
        on_invoke_tool=invoke,
        params_json_schema={
            "type": "object",
            "properties": {
                "host": {"type": "string"},
                "port": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
        },
    )
    async with securepy.AsyncSession(tools=[from_agents_tool(raw)], sandbox=False) as session:
        assert (await session.execute("ping('a')")).value == "ok"
    assert seen == [
        ("ping", json.dumps({"port": None, "host": "a"}), json.dumps({"port": None, "host": "a"}))
    ]


def test_a_tool_that_needs_approval_needs_an_approve_hook() -> None:
    guarded = function_tool(
        search_orders.on_invoke_tool, name_override="guarded", needs_approval=True
    )
    with pytest.raises(
        ValueError,
        match=r"^FunctionTool 'guarded' needs approval; pass "
        r"approve= to decide on each call from the sandbox$",
    ):
        from_agents_tool(guarded)
    assert from_agents_tool(guarded, approve=lambda request: True).name == "guarded"


def test_function_tool_policy_options_pass_through() -> None:
    tool = securepy_function_tool(needs_approval=True, timeout_seconds=5, sandbox=False)
    assert (tool.needs_approval, tool.timeout_seconds) == (True, 5)
