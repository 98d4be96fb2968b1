"""Fixtures for the OpenAI adapter: canned API bodies and a strict-schema check on requests."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest


def chat_body(message: dict[str, Any]) -> dict[str, Any]:
    """The smallest Chat Completions body the SDK accepts."""
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, **message},
                "finish_reason": finish,
            }
        ],
    }


def chat_calls(*calls: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """A completion calling tools: (call id, tool name, arguments) each."""
    return chat_body(
        {
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
                for call_id, name, arguments in calls
            ]
        }
    )


def response_body(*output: dict[str, Any]) -> dict[str, Any]:
    """The smallest Responses body the SDK accepts."""
    return {
        "id": "resp-1",
        "object": "response",
        "created_at": 0,
        "model": "fake",
        "status": "completed",
        "output": list(output),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def response_message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg-1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def strict_problems(tools: Any) -> list[str]:
    """Why the API would reject these tool definitions (empty if it would accept them)."""
    if not isinstance(tools, list) or not tools:
        return [f"no tools sent: {tools!r}"]
    problems = []
    for tool in tools:
        body = tool.get("function", tool)
        if not _NAME.match(str(body.get("name"))):
            problems.append(f"bad name {body.get('name')!r}")
        if tool.get("type") == "custom":
            if tool.get("format") != {"type": "text"}:
                problems.append(f"custom tool format {tool.get('format')!r}")
            continue
        if tool.get("type") != "function" or body.get("strict") is not True:
            problems.append(f"not a strict function tool: {tool!r}")
        problems += _schema_problems(body.get("parameters"), "parameters", root=True)
    return problems


def _schema_problems(schema: Any, where: str, *, root: bool = False) -> list[str]:
    if not isinstance(schema, dict):
        return [f"{where} is not a schema"]
    problems = []
    if root and schema.get("type") != "object":
        problems.append(f"{where}: the root must be an object")
    if schema.get("type") == "object":
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            problems.append(f"{where}: additionalProperties must be false")
        if sorted(schema.get("required", [])) != sorted(properties):
            problems.append(f"{where}: every property must be required")
        for key, value in properties.items():
            problems += _schema_problems(value, f"{where}.{key}")
    for option in schema.get("anyOf", []):
        problems += _schema_problems(option, f"{where}.anyOf")
    if "items" in schema:
        problems += _schema_problems(schema["items"], f"{where}.items")
    return problems


class Api:
    """The canned-body builders and the strict-schema check, for tests to use as a fixture."""

    chat_body = staticmethod(chat_body)
    chat_calls = staticmethod(chat_calls)
    response_body = staticmethod(response_body)
    response_message = staticmethod(response_message)
    strict_problems = staticmethod(strict_problems)


@pytest.fixture
def api() -> type[Api]:
    """Builders of fake API bodies, and ``strict_problems(tools)``."""
    return Api
