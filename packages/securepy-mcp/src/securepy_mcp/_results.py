"""A ``tools/call`` result as the plain Python value the sandboxed code receives."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import securepy
from mcp.types import CallToolResult

__all__ = ["plain_value"]


def plain_value(
    name: str, result: CallToolResult, output_schema: Mapping[str, Any] | None = None
) -> Any:
    """A ``tools/call`` result as the value the sandboxed code receives.

    Structured content when the server sent it (unwrapped from the SDK's ``{"result": x}``
    when that is all the output schema holds); otherwise the content blocks: text parsed as
    JSON when it is JSON, else the text; an image or audio block as
    ``{"type", "mime_type", "data": bytes}``; several blocks as a list.

    Raises:
        securepy.ToolError: the server flagged the result ``isError`` (the message is its text).
    """
    if result.is_error:
        raise securepy.ToolError(
            "\n".join(_block_text(b) for b in result.content) or f"{name} reported an error"
        )
    structured = result.structured_content
    if structured is not None:
        if (
            _is_wrapped(output_schema)
            and isinstance(structured, dict)
            and set(structured) == {"result"}
        ):
            return structured["result"]
        return structured
    values = [_block_value(block) for block in result.content]
    return values[0] if len(values) == 1 else (values or None)


def _is_wrapped(schema: Mapping[str, Any] | None) -> bool:
    properties = (schema or {}).get("properties")
    return isinstance(properties, Mapping) and set(properties) == {"result"}


def _block_value(block: Any) -> Any:
    kind = getattr(block, "type", None)
    if kind == "text":
        text: str = block.text
        try:
            return json.loads(text)
        except ValueError:
            return text
    if kind in ("image", "audio"):
        return {"type": kind, "mime_type": block.mime_type, "data": base64.b64decode(block.data)}
    if kind == "resource":
        resource = block.resource
        if hasattr(resource, "text"):
            return {"type": "resource", "uri": str(resource.uri), "text": resource.text}
        return {
            "type": "resource",
            "uri": str(resource.uri),
            "data": base64.b64decode(resource.blob),
        }
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)


def _block_text(block: Any) -> str:
    return block.text if getattr(block, "type", None) == "text" else f"[{block.type} content]"
