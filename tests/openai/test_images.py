"""Images the code displays reach the Responses API as input_image items; Chat gets a note."""

from __future__ import annotations

import base64
import json
from typing import Any

import pydantic
import securepy
from openai.types.responses import ResponseCustomToolCallOutputParam
from openai.types.responses.response_input_item_param import FunctionCallOutput
from securepy_openai import securepy_tool

from ..adapters.images import DOT_CODE, PNG_SIGNATURE, png_size

DATA_URL_PREFIX = "data:image/png;base64,"


def _function_call(code: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "call_id": "call_1",
        "name": "run_python",
        "arguments": json.dumps({"code": code}),
    }


def _png_of(item: Any) -> bytes:
    assert item["type"] == "input_image" and item["image_url"].startswith(DATA_URL_PREFIX)
    return base64.b64decode(item["image_url"].removeprefix(DATA_URL_PREFIX))


def test_a_function_call_output_carries_the_image() -> None:
    with securepy_tool(sandbox=False, timeout=10) as run_python:
        reply = run_python.handle(_function_call(DOT_CODE + "display(dot(5))"))
    pydantic.TypeAdapter(FunctionCallOutput).validate_python(reply)
    assert (reply["type"], reply["call_id"]) == ("function_call_output", "call_1")
    text, image = reply["output"]
    assert text == {"type": "input_text", "text": "[display: image/png]\ndot(5)"}
    assert png_size(_png_of(image)) == (1, 5)


async def test_a_custom_tool_call_output_carries_the_image_too() -> None:
    call = {"type": "custom_tool_call", "call_id": "c2", "name": "run_python", "input": ""}
    with securepy_tool(sandbox=False, timeout=10) as run_python:
        reply = await run_python.ahandle({**call, "input": DOT_CODE + "display(dot())"})
    pydantic.TypeAdapter(ResponseCustomToolCallOutputParam).validate_python(reply)
    assert _png_of(reply["output"][1]).startswith(PNG_SIGNATURE)


def test_a_chat_completions_reply_names_the_image_in_text() -> None:
    call = {
        "id": "call_3",
        "type": "function",
        "function": {"name": "run_python", "arguments": json.dumps({"code": "display(dot())"})},
    }
    with securepy_tool(sandbox=False, timeout=10) as run_python:
        run_python.handle(_function_call(DOT_CODE))
        reply = run_python.handle(call)
    assert reply["role"] == "tool" and isinstance(reply["content"], str)
    note = reply["content"].splitlines()[-1]
    assert note.startswith("[image/png output: ")
    assert note.endswith(" bytes, not shown: Chat Completions tool results carry text only]")


def test_a_text_only_run_is_still_a_string() -> None:
    with securepy_tool(sandbox=False, timeout=10) as run_python:
        reply = run_python.handle(_function_call("print('plain')\n6 * 7"))
    assert reply == {"type": "function_call_output", "call_id": "call_1", "output": "plain\n42"}


async def test_the_agents_sdk_sends_the_image_as_an_input_image() -> None:
    from agents import Agent, Runner, set_tracing_disabled
    from securepy_openai.agents import securepy_function_tool

    from .agents_model import ScriptedModel, assistant_message, function_call

    model = ScriptedModel(
        [
            [function_call("run_python", {"code": DOT_CODE + "display(dot(7))"}, call_id="c1")],
            [function_call("run_python", {"code": "6 * 7"}, call_id="c2")],
            [assistant_message("done")],
        ]
    )
    set_tracing_disabled(True)
    try:
        async with securepy.AsyncSession(sandbox=False) as session:
            agent = Agent(
                name="analyst", model=model, tools=[securepy_function_tool(session=session)]
            )
            result = await Runner.run(agent, "Plot it")
    finally:
        set_tracing_disabled(False)
    assert result.final_output == "done"
    # What the model is sent back, as the Responses API items the SDK builds.
    outputs = {
        item["call_id"]: item["output"]
        for item in model.calls[-1].input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    }
    text, image = outputs["c1"]
    assert text["type"] == "input_text" and text["text"] == "[display: image/png]\ndot(7)"
    assert png_size(_png_of(image)) == (1, 7)
    assert outputs["c2"] == "42"
