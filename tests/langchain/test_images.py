"""Images the code displays reach LangChain's ToolMessage as standard content blocks."""

from __future__ import annotations

import base64

import securepy
from langchain_core.messages import ToolMessage
from securepy.adapters import MAX_MODEL_IMAGES
from securepy_langchain import securepy_tool

from ..adapters.images import DOT_CODE, png_size


def _call(code: str) -> dict[str, object]:
    return {"type": "tool_call", "name": "run_python", "id": "call_1", "args": {"code": code}}


def test_a_displayed_png_is_an_image_block_with_the_execution_as_artifact() -> None:
    with securepy_tool(sandbox=False, timeout=10) as sandbox:
        message = sandbox.invoke(_call(DOT_CODE + "print('chart')\ndisplay(dot(2))"))
    assert isinstance(message, ToolMessage) and message.status == "success"
    text, image = message.content
    assert isinstance(text, dict) and isinstance(image, dict)
    assert (text["type"], text["text"]) == ("text", "chart\n[display: image/png]\ndot(2)")
    assert (image["type"], image["mime_type"]) == ("image", "image/png")
    assert png_size(base64.b64decode(image["base64"])) == (1, 2)
    # LangChain reads the blocks as its own standard blocks, ready for any chat model.
    assert [block["type"] for block in message.content_blocks] == ["text", "image"]
    assert isinstance(message.artifact, securepy.Execution)
    assert message.artifact.outputs[0].data["image/png"] == base64.b64decode(image["base64"])


async def test_the_async_path_carries_images_too_and_caps_them() -> None:
    with securepy_tool(sandbox=False, timeout=10) as sandbox:
        message = await sandbox.ainvoke(
            _call(DOT_CODE + f"for i in range({MAX_MODEL_IMAGES + 1}): display(dot())")
        )
    assert [block["type"] for block in message.content] == ["text"] + ["image"] * MAX_MODEL_IMAGES
    assert f"at most {MAX_MODEL_IMAGES} images are shown per run" in message.content[0]["text"]


def test_a_text_only_run_is_still_plain_text() -> None:
    with securepy_tool(sandbox=False, timeout=10) as sandbox:
        message = sandbox.invoke(_call("print('plain')\n6 * 7"))
        assert sandbox.invoke({"code": "1 + 1"}) == "2"
    assert message.content == "plain\n42"
    assert isinstance(message.artifact, securepy.Execution)
