"""securepy_tool: the sandbox as a LangChain tool, its results, its errors and its session."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import threading
import typing
from collections.abc import Callable
from typing import Any

import pytest
import securepy
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr
from securepy.adapters import CODE_DESCRIPTION, DEFAULT_DESCRIPTION
from securepy_langchain import SecurePyTool, securepy_tool

CODE_ARGUMENT = {"description": CODE_DESCRIPTION, "type": "string"}


def _call(code: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": "run_python", "args": {"code": code}}


async def _invoke(sandbox: SecurePyTool, twin: str, tool_input: dict[str, Any]) -> Any:
    if twin == "sync":
        return sandbox.invoke(tool_input)
    return await sandbox.ainvoke(tool_input)


TWINS = pytest.mark.parametrize("twin", ["sync", "async"])


def test_the_model_sees_one_code_argument_and_the_description() -> None:
    sandbox = securepy_tool(sandbox=False)
    assert convert_to_openai_tool(sandbox) == {
        "type": "function",
        "function": {
            "name": "run_python",
            "description": DEFAULT_DESCRIPTION,
            "parameters": {
                "properties": {"code": CODE_ARGUMENT},
                "required": ["code"],
                "type": "object",
            },
        },
    }


def test_name_and_description_can_be_replaced() -> None:
    sandbox = securepy_tool(name="python", description="Run Python.", sandbox=False)
    assert (sandbox.name, sandbox.description) == ("python", "Run Python.")


@TWINS
async def test_state_persists_between_calls(twin: str) -> None:
    sandbox = securepy_tool(sandbox=False)
    try:
        assert await _invoke(sandbox, twin, {"code": "total = 40\nprint('set')"}) == "set"
        assert await _invoke(sandbox, twin, {"code": "total + 2"}) == "42"
    finally:
        sandbox.close()


@TWINS
async def test_a_tool_call_gets_a_tool_message(twin: str) -> None:
    sandbox = securepy_tool(sandbox=False)
    try:
        message = await _invoke(sandbox, twin, _call("print('hi')\n6 * 7"))
    finally:
        sandbox.close()
    assert message == ToolMessage(
        "hi\n42",
        tool_call_id="call_1",
        name="run_python",
        status="success",
        artifact=message.artifact,
    )
    # The artifact is the Execution itself, for the application (never sent to the model).
    assert isinstance(message.artifact, securepy.Execution)
    assert (message.artifact.value, message.artifact.stdout) == (42, "hi\n")


ERRORS = [
    (
        "1 / 0",
        30,
        'Traceback (most recent call last):\n  File "<cell>", line 1, in <module>\n'
        "    1 / 0\n     ~~^~~\nZeroDivisionError: division by zero",
    ),
    (
        "while True:\n    pass",
        0.5,
        "Error: execution timed out after 0.5 s: the code was "
        "interrupted; the session kept its state",
    ),
    (
        "refund('A1')",
        30,
        'Traceback (most recent call last):\n  File "<cell>", line 1, in '
        "<module>\n    refund('A1')\n  File \"<securepy tool refund>\", line 2, in refund\n"
        "securepy_tools.PolicyError: denied",
    ),
    (
        "import os\nos._exit(3)",
        30,
        "Error (ProtocolError): the child process died "
        "unexpectedly (exit status 3); the session was restarted with a fresh namespace",
    ),
]


@TWINS
@pytest.mark.parametrize(
    ("code", "timeout", "expected"), ERRORS, ids=["exception", "timeout", "denied", "dead-session"]
)
async def test_failures_are_tool_errors_and_the_tool_stays_usable(
    twin: str, code: str, timeout: float, expected: str
) -> None:
    refund = securepy.Tool(
        "refund",
        "Refund an order.",
        lambda order_id: "refunded",
        args={"order_id": str},
        approve=lambda call: "denied",
    )
    sandbox = securepy_tool(tools=[refund], timeout=timeout, sandbox=False)
    try:
        message = await _invoke(sandbox, twin, _call(code))
        after = await _invoke(sandbox, twin, {"code": "'still here'"})
    finally:
        sandbox.close()
    assert isinstance(message, ToolMessage)
    assert (message.status, message.tool_call_id) == ("error", "call_1")
    # Cell numbers count every execute the worker has run, so they are left out.
    assert re.sub(r"<cell-\d+>", "<cell>", str(message.content)) == expected
    assert after == "'still here'"


@TWINS
async def test_output_is_bounded_with_a_visible_note(twin: str) -> None:
    sandbox = securepy_tool(max_output_chars=100, sandbox=False)
    try:
        text = await _invoke(sandbox, twin, {"code": "print('x' * 1000)"})
    finally:
        sandbox.close()
    marker = "\n...[output truncated: 947 more characters]...\n"
    head = (100 - len(marker)) * 2 // 3
    assert text == "x" * head + marker + "x" * (100 - len(marker) - head)


async def test_ainvoke_does_not_block_the_event_loop() -> None:
    tool_started, loop_ran = threading.Event(), threading.Event()

    def wait_for_loop() -> bool:
        """Block until the event loop has run."""
        tool_started.set()
        return loop_ran.wait(10)

    sandbox = securepy_tool(tools=[wait_for_loop], sandbox=False)
    try:
        task = asyncio.create_task(sandbox.ainvoke({"code": "wait_for_loop()"}))
        assert await asyncio.to_thread(tool_started.wait, 10)
        loop_ran.set()
        assert await task == "True"
    finally:
        sandbox.close()


def test_an_owned_session_is_closed_by_close() -> None:
    sandbox = securepy_tool(sandbox=False)
    assert sandbox.session is None
    sandbox.invoke({"code": "1"})
    session = sandbox.session
    assert isinstance(session, securepy.Session) and session.is_alive()
    sandbox.close()
    assert not session.is_alive()


def test_an_owned_session_is_closed_when_the_tool_is_collected() -> None:
    sandbox = securepy_tool(sandbox=False)
    sandbox.invoke({"code": "1"})
    session = sandbox.session
    del sandbox
    gc.collect()
    assert isinstance(session, securepy.Session) and not session.is_alive()


def test_a_passed_session_is_used_and_left_open(session: securepy.Session) -> None:
    session.execute("shared = 'from the host side'")
    sandbox = securepy_tool(session=session)
    assert sandbox.invoke({"code": "shared"}) == "'from the host side'"
    sandbox.close()
    del sandbox
    gc.collect()
    assert session.is_alive()
    assert session.execute("shared").value == "from the host side"


async def test_a_passed_async_session_runs_on_the_event_loop() -> None:
    async with securepy.AsyncSession(sandbox=False) as session:
        sandbox = securepy_tool(session=session)
        assert await sandbox.ainvoke({"code": "x = 5\nx * 2"}) == "10"
        assert (await session.execute("x")).value == 5


def test_the_tool_lists_the_tools_of_a_passed_session() -> None:
    @securepy.tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    with securepy.Session([ping], sandbox=False) as session:
        assert securepy_tool(session=session).description.endswith(
            '\n\ndef ping() -> str:\n    """Answer pong."""'
        )


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda s: securepy_tool(session=s, pool=typing.cast(Any, object())),
            TypeError,
            r"^pass session= or pool=, not both$",
        ),
        (
            lambda s: securepy_tool(session=s, tools=[print]),
            TypeError,
            r"^tools= cannot be added to a session or pool you pass; give the tools to that "
            r"session or pool$",
        ),
        (
            lambda s: securepy_tool(max_output_chars=0, sandbox=False),
            ValueError,
            r"^max_output_chars must be a positive integer, got 0$",
        ),
        (lambda s: securepy_tool(sandbox=False, colour="red"), TypeError, r"colour"),
    ],
    ids=["session-and-pool", "tools-with-session", "bad-max-output", "unknown-option"],
)
def test_misuse_fails_at_construction(
    session: securepy.Session,
    make: Callable[[securepy.Session], Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        make(session)


def _chat_reply(message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }


def test_chat_openai_binds_the_tool_and_gets_the_tool_message_back(
    fake_model_server: Callable[[dict[str, list[Any]]], Any],
) -> None:
    code = "orders = [12.5, 30.0]\nprint(len(orders), 'orders')\nsum(orders)"
    tool_call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "run_python", "arguments": json.dumps({"code": code})},
            }
        ],
    }

    def answer_from_the_tool_result(body: dict[str, Any]) -> dict[str, Any]:
        result = body["messages"][-1]["content"]
        return _chat_reply({"role": "assistant", "content": f"The sandbox said: {result}"}, "stop")

    server = fake_model_server(
        {
            "/v1/chat/completions": [
                _chat_reply(tool_call, "tool_calls"),
                answer_from_the_tool_result,
            ]
        }
    )
    sandbox = securepy_tool(sandbox=False)
    chat = ChatOpenAI(
        model="gpt-test",
        base_url=f"{server.url}/v1",
        api_key=SecretStr("sk-test"),
        max_retries=0,
        use_responses_api=False,
    )
    try:
        bound = chat.bind_tools([sandbox])
        messages: list[Any] = [HumanMessage("What do the orders add up to?")]
        ai = bound.invoke(messages)
        messages += [ai, *(sandbox.invoke(call) for call in ai.tool_calls)]
        final = bound.invoke(messages)
    finally:
        sandbox.close()

    first_request, second_request = (body for _, _, body in server.requests)
    assert first_request["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "run_python",
                "description": DEFAULT_DESCRIPTION,
                "parameters": {
                    "properties": {"code": CODE_ARGUMENT},
                    "required": ["code"],
                    "type": "object",
                },
            },
        }
    ]
    assert second_request["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "2 orders\n42.5",
    }
    assert isinstance(final, AIMessage)
    assert final.content == "The sandbox said: 2 orders\n42.5"


async def test_a_passed_async_session_cannot_be_invoked_synchronously() -> None:
    async with securepy.AsyncSession(sandbox=False) as session:
        sandbox = securepy_tool(session=session)
        with pytest.raises(
            TypeError,
            match=r"^this tool wraps an async session or pool: call "
            r"it asynchronously \(ainvoke / acall / ahandle\)$",
        ):
            sandbox.invoke({"code": "1"})


def test_printed_output_streams_to_the_run_managers_callbacks() -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.texts: list[str] = []

        def on_text(self, text: str, **kwargs: Any) -> None:
            self.texts.append(text)

    recorder = Recorder()
    with securepy_tool(sandbox=False) as sandbox:
        sandbox.invoke({"code": "print('one')\nprint('two')"}, config={"callbacks": [recorder]})
    assert "".join(recorder.texts) == "one\ntwo\n"


def test_the_class_constructs_and_runs_without_the_factory() -> None:
    with SecurePyTool(name="py", description="Run Python.", sandbox=False) as sandbox:
        assert (sandbox.name, sandbox.description, sandbox.tools) == ("py", "Run Python.", {})
        assert sandbox.invoke({"code": "6 * 7"}) == "42"
