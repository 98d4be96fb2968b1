"""A tools/call result becomes the plain value the sandboxed code gets (no process started)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import securepy
from mcp.types import (
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    TextContent,
    TextResourceContents,
)
from securepy_mcp._results import plain_value

WRAPPED = {"type": "object", "properties": {"result": {"type": "integer"}}}
PNG = base64.b64encode(b"\x89PNG").decode()


@pytest.mark.parametrize(
    ("result", "schema", "expected"),
    [
        (CallToolResult(content=[], structured_content={"result": 3}), WRAPPED, 3),
        (CallToolResult(content=[], structured_content={"result": 3}), None, {"result": 3}),
        (
            CallToolResult(content=[], structured_content={"a": 1, "b": [2]}),
            None,
            {"a": 1, "b": [2]},
        ),
        (CallToolResult(content=[TextContent(text='{"rows": [1, 2]}')]), None, {"rows": [1, 2]}),
        (CallToolResult(content=[TextContent(text="plain words")]), None, "plain words"),
        (CallToolResult(content=[TextContent(text="1"), TextContent(text="x")]), None, [1, "x"]),
        (CallToolResult(content=[]), None, None),
        (
            CallToolResult(content=[ImageContent(data=PNG, mime_type="image/png")]),
            None,
            {"type": "image", "mime_type": "image/png", "data": b"\x89PNG"},
        ),
        (
            CallToolResult(
                content=[
                    EmbeddedResource(resource=TextResourceContents(uri="file:///a.txt", text="hi"))
                ]
            ),
            None,
            {"type": "resource", "uri": "file:///a.txt", "text": "hi"},
        ),
        (
            CallToolResult(
                content=[
                    EmbeddedResource(resource=BlobResourceContents(uri="file:///a.bin", blob=PNG))
                ]
            ),
            None,
            {"type": "resource", "uri": "file:///a.bin", "data": b"\x89PNG"},
        ),
    ],
    ids=[
        "wrapped",
        "not-wrapped-without-schema",
        "structured",
        "json-text",
        "text",
        "several-blocks",
        "empty",
        "image",
        "text-resource",
        "blob-resource",
    ],
)
def test_values(result: CallToolResult, schema: Any, expected: Any) -> None:
    assert plain_value("t", result, schema) == expected


def test_an_is_error_result_raises_tool_error_with_its_text() -> None:
    result = CallToolResult(content=[TextContent(text="no such table")], is_error=True)
    with pytest.raises(securepy.ToolError, match=r"^no such table$"):
        plain_value("query", result)
    with pytest.raises(securepy.ToolError, match=r"^query reported an error$"):
        plain_value("query", CallToolResult(content=[], is_error=True))
