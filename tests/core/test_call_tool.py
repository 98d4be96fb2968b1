"""``call_tool(name, **arguments)`` inside the sandbox: a tool by a name built at run time,
checked on the host exactly as the tool's own function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import securepy
from securepy import errors


@securepy.tool
def lookup(order_id: str, verbose: bool = False) -> str:
    """Look an order up."""
    return f"{order_id}:{verbose}"


def test_a_tool_called_by_a_built_name(twin: Callable[..., Any]) -> None:
    session = twin(tools=[lookup])
    run = session.execute("call_tool('look' + 'up', order_id='A-1', verbose=True)")
    assert run.value == "A-1:True"
    assert [(call.name, call.arguments) for call in run.tool_calls] == [
        ("lookup", {"order_id": "A-1", "verbose": True})
    ]
    assert session.execute(
        "import securepy_tools\nsecurepy_tools.call_tool('lookup', order_id='B')"
    ).value == ("B:False")
    assert session.execute(
        "import asyncio\nasyncio.run(call_tool.aio('lookup', order_id='C'))"
    ).value == ("C:False")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("call_tool('nope')", r"^ToolError: there is no tool named 'nope'; available: lookup$"),
        (
            "call_tool('lookup', order_id=3)",
            r"^ToolError: lookup\(\): argument 'order_id': Input should be a valid string "
            r"\(got 3\)$",
        ),
        ("call_tool(5)", r"^TypeError: call_tool\(\) needs the tool's name as a str, not int$"),
    ],
    ids=["unknown", "bad-arguments", "bad-name"],
)
def test_the_host_checks_what_call_tool_asks(
    twin: Callable[..., Any], code: str, message: str
) -> None:
    session = twin(tools=[lookup])
    with pytest.raises(errors.ExecutionError, match=message):
        session.execute(code)


def test_call_limits_count_call_tool_too(twin: Callable[..., Any]) -> None:
    session = twin(tools=[lookup], max_tool_calls=1)
    code = (
        "lookup(order_id='A')\n"
        "try:\n    call_tool('lookup', order_id='B')\n"
        "except PolicyError as exc:\n    denied = str(exc)\ndenied"
    )
    assert session.execute(code).value == (
        "this execution may make at most 1 tool calls (max_tool_calls)"
    )


def test_a_tool_named_call_tool_takes_the_name(twin: Callable[..., Any]) -> None:
    @securepy.tool
    def call_tool(topic: str) -> str:
        """The host's own call_tool."""
        return f"tool:{topic}"

    session = twin(tools=[call_tool])
    assert session.execute("call_tool('x')").value == "tool:x"
    assert session.execute("import securepy_tools\nsecurepy_tools.__all__").value == [
        "call_tool",
        "ToolError",
        "PolicyError",
    ]
