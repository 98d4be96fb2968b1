"""The tool loops against a fake OpenAI server on 127.0.0.1, with the real SDK clients.

The model's code calls a converted host tool; every request's tool definitions are checked
against the strict-schema rules the API enforces.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import securepy_openai
from openai import AsyncOpenAI, OpenAI
from securepy_openai import SecurePyTool

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
CODE = "order = lookup_order(order_id=7)\nprint(order['total'])"
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Look up an order by id.",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "integer"}},
            "required": ["order_id"],
            "additionalProperties": False,
        },
    },
}


def lookup_order(order_id: int) -> dict[str, Any]:
    return {"id": order_id, "total": 12.5}


@pytest.fixture
def sandbox() -> Iterator[SecurePyTool]:
    host_tool = securepy_openai.from_openai_function(LOOKUP, lookup_order)
    with securepy_openai.securepy_tool(tools=[host_tool], sandbox=False) as tool:
        yield tool


@pytest.fixture(params=["sync", "async"])
def call_loop(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``call_loop(server, run_tools, arun_tools, **kw)`` runs the sync or the async flavour."""

    def call(server: Any, sync_fn: Any, async_fn: Any, **kwargs: Any) -> Any:
        options = {"base_url": server.url + "/v1", "api_key": "x", "max_retries": 0}
        if request.param == "sync":
            with OpenAI(**options) as client:
                return sync_fn(client, model="fake", **kwargs)

        async def run() -> Any:
            async with AsyncOpenAI(**options) as client:
                return await async_fn(client, model="fake", **kwargs)

        return asyncio.run(run())

    return call


def _bodies(server: Any, api: Any) -> list[dict[str, Any]]:
    """The request bodies, each checked against the strict-schema rules."""
    bodies = [body for _, _, body in server.requests]
    for body in bodies:
        assert api.strict_problems(body["tools"]) == []
    return bodies


def test_chat_loop_runs_host_tools_from_model_code(
    fake_model_server: Any, api: Any, sandbox: SecurePyTool, call_loop: Any
) -> None:
    server = fake_model_server(
        {
            CHAT: [
                api.chat_calls(("c1", "run_python", {"code": CODE})),
                api.chat_body({"content": "The total is 12.5."}),
            ]
        }
    )
    messages = [{"role": "user", "content": "What is order 7's total?"}]
    final = call_loop(
        server,
        securepy_openai.run_tools,
        securepy_openai.arun_tools,
        messages=messages,
        tools=[sandbox],
    )
    assert final.choices[0].message.content == "The total is 12.5."
    first, second = _bodies(server, api)
    assert first["tools"] == [sandbox.chat_tool]
    assert first["messages"] == messages
    assert second["messages"][1]["tool_calls"][0]["id"] == "c1"
    assert second["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "12.5"}
    assert messages == [{"role": "user", "content": "What is order 7's total?"}]


@pytest.mark.parametrize("free_form", [False, True], ids=["function", "custom"])
def test_responses_loop_runs_host_tools_from_model_code(
    fake_model_server: Any, api: Any, sandbox: SecurePyTool, call_loop: Any, free_form: bool
) -> None:
    if free_form:
        call = {
            "type": "custom_tool_call",
            "id": "ct1",
            "call_id": "c1",
            "name": "run_python",
            "input": CODE,
        }
    else:
        call = {
            "type": "function_call",
            "id": "fc1",
            "call_id": "c1",
            "name": "run_python",
            "arguments": json.dumps({"code": CODE}),
            "status": "completed",
        }
    server = fake_model_server(
        {
            RESPONSES: [
                api.response_body(call),
                api.response_body(api.response_message("Total: 12.5")),
            ]
        }
    )
    final = call_loop(
        server,
        securepy_openai.run_response_tools,
        securepy_openai.arun_response_tools,
        input="What is order 7's total?",
        tools=[sandbox],
        free_form=free_form,
    )
    assert final.output_text == "Total: 12.5"
    first, second = _bodies(server, api)
    assert first["tools"] == [sandbox.custom_tool if free_form else sandbox.response_tool]
    assert first["input"] == [{"role": "user", "content": "What is order 7's total?"}]
    output_type = "custom_tool_call_output" if free_form else "function_call_output"
    assert second["input"][1:] == [call, {"type": output_type, "call_id": "c1", "output": "12.5"}]


def _split_tool_call_chunks(code: str) -> dict[str, Any]:
    """An SSE stream whose one tool call arrives in pieces, split inside the JSON string."""
    arguments = json.dumps({"code": code})
    pieces = [arguments[:5], arguments[5:17], arguments[17:30], arguments[30:]]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chunk",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    head = {
        "role": "assistant",
        "tool_calls": [
            {
                "index": 0,
                "id": "c1",
                "type": "function",
                "function": {"name": "run_python", "arguments": ""},
            }
        ],
    }
    return {
        "__sse__": [chunk(head)]
        + [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in pieces
        ]
        + [chunk({}, "tool_calls")]
    }


def test_streamed_chat_tool_call_split_across_chunks(
    fake_model_server: Any, api: Any, sandbox: SecurePyTool
) -> None:
    server = fake_model_server({CHAT: [_split_tool_call_chunks(CODE)]})
    calls: dict[int, dict[str, Any]] = {}
    with OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="fake", messages=[], stream=True, tools=[sandbox.chat_tool]
        )
        for chunk in stream:
            for delta in chunk.choices[0].delta.tool_calls or ():
                call = calls.setdefault(
                    delta.index,
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] += delta.id or ""
                call["function"]["name"] += delta.function.name or "" if delta.function else ""
                call["function"]["arguments"] += (
                    delta.function.arguments or "" if delta.function else ""
                )
    assert sandbox.handle(calls[0]) == {"role": "tool", "tool_call_id": "c1", "content": "12.5"}
    assert _bodies(server, api)[0]["stream"] is True


async def test_streamed_chat_with_the_sdk_stream_helper(
    fake_model_server: Any, api: Any, sandbox: SecurePyTool
) -> None:
    server = fake_model_server({CHAT: [_split_tool_call_chunks(CODE)]})
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    async with (
        client,
        client.chat.completions.stream(
            model="fake", messages=[], tools=[sandbox.chat_tool]
        ) as stream,
    ):
        completion = await stream.get_final_completion()
    tool_call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert await sandbox.ahandle(tool_call) == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "12.5",
    }
    _bodies(server, api)


def test_an_error_in_the_code_goes_back_to_the_model(
    fake_model_server: Any, api: Any, sandbox: SecurePyTool, call_loop: Any
) -> None:
    server = fake_model_server(
        {
            CHAT: [
                api.chat_calls(
                    ("c1", "run_python", {"code": "lookup_order(order_id='seven')"}),
                    ("c2", "search", {"q": "x"}),
                ),
                api.chat_body({"content": "Sorry."}),
            ]
        }
    )
    final = call_loop(
        server,
        securepy_openai.run_tools,
        securepy_openai.arun_tools,
        messages=[{"role": "user", "content": "go"}],
        tools=[sandbox],
    )
    assert final.choices[0].message.content == "Sorry."
    error, unknown = _bodies(server, api)[1]["messages"][2:]
    assert error["tool_call_id"] == "c1"
    assert (
        error["content"]
        .splitlines()[-1]
        .endswith("ToolError: lookup_order(): argument 'order_id' must be int, got str 'seven'")
    )
    assert unknown == {
        "role": "tool",
        "tool_call_id": "c2",
        "content": "Error: there is no tool named 'search'; available: 'run_python'.",
    }


def test_max_steps_returns_the_last_response_unanswered(
    fake_model_server: Any, api: Any, sandbox: SecurePyTool, call_loop: Any
) -> None:
    server = fake_model_server(
        {
            CHAT: [
                api.chat_calls(("c1", "run_python", {"code": "n = 1"})),
                api.chat_calls(("c2", "run_python", {"code": "n = 2"})),
            ]
        }
    )
    final = call_loop(
        server,
        securepy_openai.run_tools,
        securepy_openai.arun_tools,
        messages=[{"role": "user", "content": "go"}],
        tools=[sandbox],
        max_steps=2,
    )
    assert final.choices[0].finish_reason == "tool_calls"
    assert len(server.requests) == 2
    assert sandbox.runner.run("n").text == "1"


@pytest.mark.parametrize("max_steps", [0, -1, 1.5])
def test_max_steps_must_be_positive(sandbox: SecurePyTool, max_steps: Any) -> None:
    with (
        OpenAI(base_url="http://127.0.0.1:9/v1", api_key="x") as client,
        pytest.raises(ValueError, match=r"^max_steps must be a positive integer, got "),
    ):
        securepy_openai.run_tools(
            client, model="m", messages=[], tools=[sandbox], max_steps=max_steps
        )


def test_tool_names_must_be_unique(sandbox: SecurePyTool) -> None:
    with (
        OpenAI(base_url="http://127.0.0.1:9/v1", api_key="x") as client,
        pytest.raises(ValueError, match=r"^two tools share a name: "),
    ):
        securepy_openai.run_response_tools(client, model="m", input="hi", tools=[sandbox, sandbox])


@pytest.mark.sandbox
def test_model_code_reaches_host_data_only_through_a_tool(
    fake_model_server: Any, api: Any, tmp_path: Path
) -> None:
    report = tmp_path / "report.txt"
    report.write_text("revenue: 42\n")

    def read_report() -> str:
        """The quarterly report (a host file)."""
        return report.read_text()

    code = (
        f"try:\n    open({str(report)!r}).read()\nexcept OSError as e:\n"
        "    print('direct read failed:', type(e).__name__)\nprint(read_report())"
    )
    server = fake_model_server(
        {
            RESPONSES: [
                api.response_body(
                    {
                        "type": "function_call",
                        "id": "fc1",
                        "call_id": "c1",
                        "name": "run_python",
                        "arguments": json.dumps({"code": code}),
                    }
                ),
                api.response_body(api.response_message("Revenue was 42.")),
            ]
        }
    )
    with (
        securepy_openai.securepy_tool(tools=[read_report], sandbox=True) as sandbox,
        OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as client,
    ):
        final = securepy_openai.run_response_tools(
            client, model="fake", input="Revenue?", tools=[sandbox]
        )
    assert final.output_text == "Revenue was 42."
    output = _bodies(server, api)[1]["input"][-1]["output"]
    assert output == "direct read failed: FileNotFoundError\nrevenue: 42"
