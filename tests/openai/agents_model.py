"""A scripted Agents SDK model: each call answers with the next scripted list of output items.

Written here rather than taken from ``agents.testing``, which the SDK ships only from 0.21 on:
the adapter supports openai-agents 0.20 (the lowest-direct run tests it there). Same names and
shape: ``ScriptedModel(steps)``, ``function_call(...)``, ``assistant_message(...)``,
``.calls`` (what the model was sent) and ``.assert_complete()``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from agents import Model, ModelResponse, Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)


@dataclasses.dataclass(frozen=True)
class ModelCall:
    """What one model call was sent: the input items and the tools."""

    input: Any
    tools: list[Any]


class ScriptedModel(Model):
    """Answers the n-th call with ``steps[n]``; a call past the script fails the test."""

    def __init__(self, steps: Sequence[list[Any]]) -> None:
        self._steps = list(steps)
        self.calls: list[ModelCall] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        self.calls.append(ModelCall(copy.deepcopy(input), list(tools)))
        if len(self.calls) > len(self._steps):
            raise AssertionError(f"model call {len(self.calls)} is past the script")
        return ModelResponse(
            output=self._steps[len(self.calls) - 1], usage=Usage(), response_id=None
        )

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the tests run the agent without streaming")

    def assert_complete(self) -> None:
        assert len(self.calls) == len(self._steps), (
            f"{len(self._steps) - len(self.calls)} scripted steps were never asked for"
        )


def function_call(
    name: str, arguments: str | Mapping[str, Any], *, call_id: str
) -> ResponseFunctionToolCall:
    """The model calls the function tool ``name`` with ``arguments`` (JSON text or a mapping)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ResponseFunctionToolCall(
        id=call_id, call_id=call_id, type="function_call", name=name, arguments=text
    )


def assistant_message(text: str) -> ResponseOutputMessage:
    """The model answers ``text``."""
    return ResponseOutputMessage(
        id="msg",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(text=text, type="output_text", annotations=[])],
    )
