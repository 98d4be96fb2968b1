"""securepy_tool: the definitions it offers, and every call shape and failure its handler meets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import securepy
import securepy_openai
from openai.types.chat import ChatCompletionMessageFunctionToolCall
from openai.types.chat.chat_completion_message_function_tool_call import Function
from openai.types.responses import ResponseCustomToolCall, ResponseFunctionToolCall
from securepy.adapters import CODE_DESCRIPTION
from securepy_openai import SecurePyTool

PROBLEM = (
    'Error: run_python takes one argument, a "code" string, e.g. {"code": "print(1 + 1)"}; got '
)


def lookup_order(order_id: int) -> dict[str, Any]:
    """Look up an order by id."""
    return {"id": order_id, "total": 12.5}


refund = securepy.Tool(
    "refund",
    "Refund an order.",
    lambda order_id: "refunded",
    args={"order_id": int},
    approve=lambda request: "refunds need a human",
)


@pytest.fixture
def sandbox() -> Iterator[SecurePyTool]:
    with securepy_openai.securepy_tool(
        tools=[lookup_order, refund], sandbox=False, timeout=1
    ) as tool:
        yield tool


CODE = "print(lookup_order(7)['total'])"
ARGS = json.dumps({"code": CODE})

CALLS = {
    "chat-dict": (
        {"id": "c1", "type": "function", "function": {"name": "run_python", "arguments": ARGS}},
        {"role": "tool", "tool_call_id": "c1", "content": "12.5"},
    ),
    "chat-sdk": (
        ChatCompletionMessageFunctionToolCall(
            id="c1", type="function", function=Function(name="run_python", arguments=ARGS)
        ),
        {"role": "tool", "tool_call_id": "c1", "content": "12.5"},
    ),
    "chat-custom-dict": (
        {"id": "c1", "type": "custom", "custom": {"name": "run_python", "input": CODE}},
        {"role": "tool", "tool_call_id": "c1", "content": "12.5"},
    ),
    "function_call-dict": (
        {"type": "function_call", "call_id": "c2", "name": "run_python", "arguments": ARGS},
        {"type": "function_call_output", "call_id": "c2", "output": "12.5"},
    ),
    "function_call-sdk": (
        ResponseFunctionToolCall(
            type="function_call", call_id="c2", name="run_python", arguments=ARGS
        ),
        {"type": "function_call_output", "call_id": "c2", "output": "12.5"},
    ),
    "custom_tool_call-dict": (
        {"type": "custom_tool_call", "call_id": "c3", "name": "run_python", "input": CODE},
        {"type": "custom_tool_call_output", "call_id": "c3", "output": "12.5"},
    ),
    "custom_tool_call-sdk": (
        ResponseCustomToolCall(
            type="custom_tool_call", call_id="c3", name="run_python", input=CODE
        ),
        {"type": "custom_tool_call_output", "call_id": "c3", "output": "12.5"},
    ),
}


@pytest.fixture(params=["sync", "async"])
def handle(request: pytest.FixtureRequest, sandbox: SecurePyTool) -> Any:
    """``sandbox.handle`` or ``sandbox.ahandle``, called the same way."""
    if request.param == "sync":
        return sandbox.handle

    def call_async(call: Any) -> dict[str, Any]:
        import asyncio

        return asyncio.run(sandbox.ahandle(call))

    return call_async


@pytest.mark.parametrize("call, reply", list(CALLS.values()), ids=list(CALLS))
def test_handle_answers_each_call_shape(handle: Any, call: Any, reply: dict[str, Any]) -> None:
    assert handle(call) == reply


def _run(handle: Any, code: str) -> str:
    reply = handle(
        {
            "type": "function_call",
            "call_id": "c",
            "name": "run_python",
            "arguments": json.dumps({"code": code}),
        }
    )
    return str(reply["output"])


def test_an_exception_in_the_code_becomes_its_traceback(handle: Any) -> None:
    text = _run(handle, "print('before')\n1/0")
    # The cell number counts executes across the process, so it is matched, not pinned.
    assert re.fullmatch(
        r"before\nTraceback \(most recent call last\):\n"
        r'  File "<cell-\d+>", line 2, in <module>\n    1/0\n     ~\^~\n'
        r"ZeroDivisionError: division by zero",
        text,
    ), text


def test_a_timeout_becomes_text_and_the_session_goes_on(handle: Any) -> None:
    assert _run(handle, "x = 1\nwhile True: pass") == (
        "Error: execution timed out after 1 s: the code was interrupted; the session kept its state"
    )
    assert _run(handle, "x") == "1"


def test_a_denied_tool_call_becomes_text(handle: Any) -> None:
    last_line = _run(handle, "refund(3)").splitlines()[-1]
    assert last_line.endswith("PolicyError: refunds need a human")


def test_bad_tool_arguments_raise_tool_error_inside(handle: Any) -> None:
    assert (
        _run(handle, "try:\n    lookup_order('x')\nexcept ToolError as e:\n    print('caught')")
        == "caught"
    )


def test_a_syntax_error_becomes_text(handle: Any) -> None:
    assert _run(handle, "x = ") == "Error (CodeValidationError): invalid syntax (line 1, column 5)"


@pytest.mark.parametrize(
    "arguments, text",
    [
        (
            "{nope",
            "Error: the arguments are not valid JSON (Expecting property name enclosed in "
            'double quotes: line 1 column 2 (char 1)); send {"code": "<python source>"}.',
        ),
        ("{}", PROBLEM + "{}."),
        ('{"code": 3}', PROBLEM + "{'code': 3}."),
        ('["print(1)"]', PROBLEM + "['print(1)']."),
        (
            "[" * 100_000,
            "Error: the arguments are not valid JSON (maximum recursion depth exceeded "
            "while decoding a JSON array from a unicode string); send "
            '{"code": "<python source>"}.',
        ),
    ],
    ids=["not-json", "no-code", "code-not-str", "not-object", "deeply-nested"],
)
def test_malformed_arguments_become_text(handle: Any, arguments: str, text: str) -> None:
    reply = handle(
        {"id": "c9", "type": "function", "function": {"name": "run_python", "arguments": arguments}}
    )
    assert reply == {"role": "tool", "tool_call_id": "c9", "content": text}


def test_a_call_for_another_tool_becomes_text(handle: Any) -> None:
    reply = handle({"type": "function_call", "call_id": "c", "name": "search", "arguments": ARGS})
    assert reply == {
        "type": "function_call_output",
        "call_id": "c",
        "output": "Error: there is no tool named 'search'; call 'run_python'.",
    }


@pytest.mark.parametrize(
    "call",
    [42, {"type": "message"}, {"role": "user", "content": "hi"}],
    ids=["int", "message-item", "chat-message"],
)
def test_something_that_is_no_tool_call_is_a_type_error(sandbox: SecurePyTool, call: Any) -> None:
    with pytest.raises(
        TypeError,
        match=r"^expected a Chat Completions tool call or a Responses "
        r"function_call / custom_tool_call item, got ",
    ):
        sandbox.handle(call)


def test_definitions_are_strict_and_list_the_host_tools(sandbox: SecurePyTool) -> None:
    code = {"type": "string", "description": CODE_DESCRIPTION}
    parameters = {
        "type": "object",
        "properties": {"code": code},
        "required": ["code"],
        "additionalProperties": False,
    }
    description = sandbox.description
    assert description.endswith(
        "\n\ndef lookup_order(order_id: int) -> dict[str, Any]:\n"
        '    """Look up an order by id."""\n\n'
        "def refund(order_id: int):\n"
        '    """Refund an order."""'
    )
    assert sandbox.chat_tool == {
        "type": "function",
        "function": {
            "name": "run_python",
            "description": description,
            "parameters": parameters,
            "strict": True,
        },
    }
    assert sandbox.response_tool == {
        "type": "function",
        "name": "run_python",
        "description": description,
        "parameters": parameters,
        "strict": True,
    }
    assert sandbox.custom_tool == {
        "type": "custom",
        "name": "run_python",
        "format": {"type": "text"},
        "description": description + "\nSend the Python source itself as input.",
    }


def test_definitions_are_fresh_copies(sandbox: SecurePyTool) -> None:
    definition: Any = sandbox.chat_tool
    definition["function"]["parameters"]["required"].append("x")
    again: Any = sandbox.chat_tool
    assert again["function"]["parameters"]["required"] == ["code"]


def test_name_and_description_can_be_set() -> None:
    with securepy_openai.securepy_tool(name="py-2", description="Run it.", sandbox=False) as tool:
        assert tool.response_tool["name"] == "py-2"
        assert tool.response_tool["description"] == "Run it."


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "dotted.name"])
def test_an_invalid_openai_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"^OpenAI tool names must match"):
        securepy_openai.securepy_tool(name=name, sandbox=False)


def test_a_passed_session_stays_open(session: securepy.Session) -> None:
    tool = securepy_openai.securepy_tool(session=session)
    assert _run(tool.handle, "y = 5\ny") == "5"
    tool.close()
    assert session.is_alive()
    assert session.execute("y").value == 5


def test_an_owned_session_closes_with_the_tool() -> None:
    tool = securepy_openai.securepy_tool(sandbox=False)
    assert _run(tool.handle, "1 + 1") == "2"
    owned = tool.runner.session
    assert isinstance(owned, securepy.Session) and owned.is_alive()
    tool.close()
    assert not owned.is_alive()


async def test_ahandle_uses_an_async_session_directly() -> None:
    async with securepy.AsyncSession(tools=[lookup_order], sandbox=False) as session:
        tool = securepy_openai.securepy_tool(session=session)
        reply = await tool.ahandle(
            {"type": "custom_tool_call", "call_id": "c", "name": "run_python", "input": CODE}
        )
        assert reply == {"type": "custom_tool_call_output", "call_id": "c", "output": "12.5"}
