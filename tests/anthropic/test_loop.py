"""Agent loops with the real Anthropic SDK against a fake model server on 127.0.0.1.

The server plays the model: each reply is canned, or computed from the request so it can read
what the tools returned. Both the manual ``messages.create`` loop and the SDK's tool runner
(with server-side threads off, as the fake server has none) drive the sandbox tool.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest
import securepy
from securepy_anthropic import SecurePyTool, from_anthropic_tool, securepy_tool

MODEL = "claude-test"
PATH = "/v1/messages"

ORDERS = {1: {"id": 1, "total": 12.5}, 2: {"id": 2, "total": 30.0}}
LOOKUP_ORDER = {
    "name": "lookup_order",
    "description": "An order by id, from the host's database.",
    "input_schema": {
        "type": "object",
        "properties": {"order_id": {"type": "integer"}},
        "required": ["order_id"],
    },
}
_ids = itertools.count(1)

# Server-side threads are off where the SDK has them (the fake server has none); the SDK's
# tool runner takes `thread` only from a later release than the adapter's lowest (1.0).
NO_THREADS: dict[str, Any] = (
    {"thread": False}
    if "thread" in inspect.signature(anthropic.resources.beta.Messages.tool_runner).parameters
    else {}
)


def reply(*content: dict[str, Any], stop_reason: str = "tool_use") -> dict[str, Any]:
    return {
        "id": f"msg_{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


def run(tool_use_id: str, code: str) -> dict[str, Any]:
    return reply(
        {"type": "tool_use", "id": tool_use_id, "name": "run_python", "input": {"code": code}}
    )


def answer_with_last_results(body: dict[str, Any]) -> dict[str, Any]:
    """The model's last turn: it repeats what the tools returned, so tests see it was read."""
    seen = [
        f"{'error' if r.get('is_error') else 'ok'}: {result_text(r)}"
        for r in body["messages"][-1]["content"]
    ]
    return reply({"type": "text", "text": "\n".join(seen)}, stop_reason="end_turn")


def result_text(result: dict[str, Any]) -> str:
    content = result["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content)


def text_of(message: Any) -> str:
    """The text of a reply's first block (the model's answer)."""
    assert message.content[0].type == "text"
    return str(message.content[0].text)


def tool_results(server: Any, request_index: int) -> list[dict[str, Any]]:
    """The tool_result blocks the model received in one request."""
    last = server.requests[request_index][2]["messages"][-1]
    assert last["role"] == "user"
    return [{**block, "content": result_text(block)} for block in last["content"]]


def lookup_order(order_id: int) -> dict[str, Any]:
    return ORDERS[order_id]


@pytest.fixture
def run_python() -> Any:
    with securepy_tool(
        tools=[from_anthropic_tool(LOOKUP_ORDER, lookup_order)], sandbox=False, timeout=2
    ) as tool:
        yield tool


MANUAL_SCRIPT: list[Any] = [
    run("toolu_1", "orders = [lookup_order(i) for i in (1, 2)]\nprint(len(orders))"),
    run("toolu_2", "sum(order['total'] for order in orders)"),
    run("toolu_3", "lookup_order(3)"),
    answer_with_last_results,
]
MANUAL_RESULTS = [
    [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "2", "is_error": False}],
    [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "42.5", "is_error": False}],
]


def check_manual_loop(server: Any, tool: SecurePyTool, final: Any) -> None:
    assert [request[0] for request in server.requests] == [PATH] * 4
    assert all(request[2]["tools"] == [tool.definition] for request in server.requests)
    assert tool_results(server, 1) == MANUAL_RESULTS[0]
    assert tool_results(server, 2) == MANUAL_RESULTS[1]
    [failed] = tool_results(server, 3)
    assert failed["is_error"] is True
    assert failed["content"].endswith("ToolError: lookup_order() failed: KeyError: 3")
    assert final.stop_reason == "end_turn"
    assert text_of(final) == "error: " + failed["content"]


def test_manual_loop_sync(fake_model_server: Callable[..., Any], run_python: SecurePyTool) -> None:
    server = fake_model_server({PATH: list(MANUAL_SCRIPT)})
    client = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Total of orders 1 and 2?"}]
    while True:
        response = client.messages.create(
            model=MODEL, max_tokens=512, messages=messages, tools=[run_python.definition]
        )
        messages.append({"role": "assistant", "content": response.content})
        if response.stop_reason != "tool_use":
            break
        messages.append(
            {
                "role": "user",
                "content": [
                    run_python.handle(block)
                    for block in response.content
                    if block.type == "tool_use"
                ],
            }
        )
    client.close()
    check_manual_loop(server, run_python, response)


async def test_manual_loop_async(
    fake_model_server: Callable[..., Any], run_python: SecurePyTool
) -> None:
    server = fake_model_server({PATH: list(MANUAL_SCRIPT)})
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Total of orders 1 and 2?"}]
    while True:
        response = await client.messages.create(
            model=MODEL, max_tokens=512, messages=messages, tools=[run_python.definition]
        )
        messages.append({"role": "assistant", "content": response.content})
        if response.stop_reason != "tool_use":
            break
        messages.append(
            {
                "role": "user",
                "content": [
                    await run_python.ahandle(block)
                    for block in response.content
                    if block.type == "tool_use"
                ],
            }
        )
    await client.close()
    check_manual_loop(server, run_python, response)


RUNNER_SCRIPT: list[Any] = [
    run("toolu_1", "total = lookup_order(2)['total']"),
    run("toolu_2", "print('dividing')\ntotal / 0"),
    answer_with_last_results,
]


def check_runner_loop(server: Any, final: Any) -> None:
    bodies = [request[2] for request in server.requests]
    assert [body.get("thread") for body in bodies] == [None] * 3
    assert [len(body["messages"]) for body in bodies] == [1, 3, 5]
    assert tool_results(server, 1) == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "(no output)"}
    ]
    [failed] = tool_results(server, 2)
    assert failed["is_error"] is True
    assert failed["tool_use_id"] == "toolu_2"
    assert failed["content"].startswith("dividing\nTraceback (most recent call last):\n")
    assert failed["content"].endswith("ZeroDivisionError: float division by zero")
    assert text_of(final) == "error: " + failed["content"]


def test_tool_runner_drives_beta_tool(
    fake_model_server: Callable[..., Any], run_python: SecurePyTool
) -> None:
    server = fake_model_server({PATH: list(RUNNER_SCRIPT)})
    with anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0) as client:
        runner = client.beta.messages.tool_runner(
            model=MODEL,
            max_tokens=512,
            tools=[run_python.beta_tool],
            **NO_THREADS,
            messages=[{"role": "user", "content": "Divide order 2's total by zero."}],
        )
        final = runner.until_done()
    assert server.requests[0][2]["tools"] == [run_python.definition]
    check_runner_loop(server, final)


async def test_async_tool_runner_drives_beta_async_tool(
    fake_model_server: Callable[..., Any], run_python: SecurePyTool
) -> None:
    server = fake_model_server({PATH: list(RUNNER_SCRIPT)})
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0) as client:
        runner = client.beta.messages.tool_runner(
            model=MODEL,
            max_tokens=512,
            tools=[run_python.beta_async_tool],
            **NO_THREADS,
            messages=[{"role": "user", "content": "Divide order 2's total by zero."}],
        )
        final = await runner.until_done()
    assert server.requests[0][2]["tools"] == [run_python.definition]
    check_runner_loop(server, final)


def test_the_model_reads_a_timeout_and_a_denied_call(fake_model_server: Callable[..., Any]) -> None:
    secret = securepy.Tool(
        "read_secret",
        "The host's secret.",
        lambda: "s3cret",
        approve=lambda call: "secrets stay on the host",
    )
    server = fake_model_server(
        {
            PATH: [
                run("toolu_1", "print('working')\nwhile True: pass"),
                run("toolu_2", "read_secret()"),
                answer_with_last_results,
            ]
        }
    )
    with (
        securepy_tool(tools=[secret], sandbox=False, timeout=1) as tool,
        anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0) as client,
    ):
        final = client.beta.messages.tool_runner(
            model=MODEL,
            max_tokens=512,
            tools=[tool.beta_tool],
            **NO_THREADS,
            messages=[{"role": "user", "content": "Get the secret."}],
        ).until_done()
    [timed_out] = tool_results(server, 1)
    assert timed_out == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "is_error": True,
        "content": "working\nError: execution timed out after 1 s: the code "
        "was interrupted; the session kept its state",
    }
    [denied] = tool_results(server, 2)
    assert denied["is_error"] is True
    assert denied["content"].endswith("PolicyError: secrets stay on the host")
    assert text_of(final) == "error: " + denied["content"]


@pytest.mark.sandbox
def test_sandboxed_code_reads_host_data_only_through_the_tool(
    fake_model_server: Callable[..., Any], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    ledger.write_text("balance=1234\n")
    read_ledger = from_anthropic_tool(
        {
            "name": "read_ledger",
            "description": "The host's ledger file.",
            "input_schema": {"type": "object", "properties": {}},
        },
        ledger.read_text,
    )
    server = fake_model_server(
        {
            PATH: [
                run(
                    "toolu_1",
                    f"try:\n    open({str(ledger)!r}).read()\n"
                    "except OSError as e:\n    print('blocked:', type(e).__name__)",
                ),
                run("toolu_2", "read_ledger().strip()"),
                answer_with_last_results,
            ]
        }
    )
    with (
        securepy_tool(tools=[read_ledger], sandbox=True, timeout=30) as tool,
        anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0) as client,
    ):
        messages: list[Any] = [{"role": "user", "content": "What is the balance?"}]
        while (
            response := client.messages.create(
                model=MODEL, max_tokens=512, messages=messages, tools=[tool.definition]
            )
        ).stop_reason == "tool_use":
            messages += [
                {"role": "assistant", "content": response.content},
                {
                    "role": "user",
                    "content": [tool.handle(b) for b in response.content if b.type == "tool_use"],
                },
            ]
    assert tool_results(server, 1)[0]["content"] == "blocked: FileNotFoundError"
    assert text_of(response) == "ok: 'balance=1234'"
