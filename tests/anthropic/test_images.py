"""Images the code displays reach Anthropic's tool_result as base64 image blocks."""

from __future__ import annotations

import base64
from typing import Any

import pydantic
from anthropic.types import ToolResultBlockParam
from anthropic.types.beta import BetaToolResultBlockParam
from securepy_anthropic import securepy_tool

from ..adapters.images import DOT_CODE, png_size


def _use(code: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_1", "name": "run_python", "input": {"code": code}}


def _image_of(block: Any) -> bytes:
    assert block["type"] == "image"
    source = block["source"]
    assert (source["type"], source["media_type"]) == ("base64", "image/png")
    return base64.b64decode(source["data"])


def test_handle_answers_with_a_text_block_and_an_image_block() -> None:
    with securepy_tool(sandbox=False, timeout=10) as run_python:
        result = run_python.handle(_use(DOT_CODE + "display(dot(4))"))
    # The SDK's own type accepts it as a tool_result.
    pydantic.TypeAdapter(ToolResultBlockParam).validate_python(result)
    assert result["is_error"] is False
    text, image = result["content"]
    assert text == {"type": "text", "text": "[display: image/png]\ndot(4)"}
    assert png_size(_image_of(image)) == (1, 4)


async def test_ahandle_and_the_beta_tools_carry_images_too() -> None:
    with securepy_tool(sandbox=False, timeout=10) as run_python:
        result = await run_python.ahandle(_use(DOT_CODE + "display(dot())"))
        assert png_size(_image_of(list(result["content"])[1])) == (1, 1)
        # What the SDK's tool runner puts into its tool_result for the beta tool.
        content = run_python.beta_tool.call({"code": "display(dot(2))"})
        pydantic.TypeAdapter(BetaToolResultBlockParam).validate_python(
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": content}
        )
        assert png_size(_image_of(list(content)[1])) == (1, 2)
        content = await run_python.beta_async_tool.call({"code": "display(dot(3))"})
        assert png_size(_image_of(list(content)[1])) == (1, 3)


def test_a_text_only_run_is_still_a_string() -> None:
    with securepy_tool(sandbox=False, timeout=10) as run_python:
        assert run_python.handle(_use("print('plain')\n6 * 7"))["content"] == "plain\n42"
        assert run_python.beta_tool.call({"code": "6 * 7"}) == "42"
