"""Images the code displays reach LlamaIndex as ImageBlocks in the ToolOutput."""

from __future__ import annotations

from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from securepy_llamaindex import securepy_tool

from ..adapters.images import DOT_CODE, png_size


def test_a_displayed_png_is_an_image_block() -> None:
    with securepy_tool(sandbox=False, timeout=10) as tool:
        output = tool.call(code=DOT_CODE + "print('chart')\ndisplay(dot(6))")
    assert not output.is_error
    text, image = output.blocks
    assert isinstance(text, TextBlock) and isinstance(image, ImageBlock)
    assert output.content == text.text == "chart\n[display: image/png]\ndot(6)"
    assert image.image_mimetype == "image/png"
    assert png_size(image.resolve_image().read()) == (1, 6)
    # As FunctionAgent builds the tool message from the output's blocks.
    message = ChatMessage(role=MessageRole.TOOL, blocks=output.blocks)
    assert [type(block) for block in message.blocks] == [TextBlock, ImageBlock]


async def test_acall_carries_images_too() -> None:
    with securepy_tool(sandbox=False, timeout=10) as tool:
        output = await tool.acall(code=DOT_CODE + "display(dot(2))")
    assert [type(block) for block in output.blocks] == [TextBlock, ImageBlock]


def test_a_text_only_run_is_still_one_text_block() -> None:
    with securepy_tool(sandbox=False, timeout=10) as tool:
        output = tool.call(code="print('plain')\n6 * 7")
    assert output.blocks == [TextBlock(text="plain\n42")]
    assert output.content == "plain\n42"
