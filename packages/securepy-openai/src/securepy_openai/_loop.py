"""The whole tool-calling loop, for users who don't want to write it.

Four functions, one per API and client kind: :func:`run_tools` / :func:`arun_tools` for Chat
Completions, :func:`run_response_tools` / :func:`arun_response_tools` for the Responses API.
Each asks the model, runs every call it makes to one of ``tools``, sends the outputs back, and
repeats until the model answers without calling a tool or ``max_steps`` requests were made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._tool import SecurePyTool, ToolCall, read_call, reply_to

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

__all__ = ["arun_response_tools", "arun_tools", "run_response_tools", "run_tools"]


def run_tools(
    client: openai.OpenAI,
    *,
    model: str,
    messages: Iterable[Any],
    tools: Sequence[SecurePyTool],
    max_steps: int = 10,
    **create_options: Any,
) -> ChatCompletion:
    """Run a Chat Completions tool loop and return the final completion.

    Args:
        client: an ``openai.OpenAI`` client.
        model: the model name.
        messages: the conversation so far; not modified.
        tools: the sandbox tools the model may call (sent as their ``chat_tool``).
        max_steps: most model requests. When reached, the last completion is returned as it
            is, its tool calls not run (its ``finish_reason`` is then ``"tool_calls"``).
        **create_options: passed to ``client.chat.completions.create`` (not ``stream``).

    Returns:
        The last ``ChatCompletion``.

    Raises:
        ValueError: ``max_steps`` is below 1, or two tools share a name.
    """
    by_name, history = _chat_start(messages, tools, max_steps)
    definitions: list[Any] = [t.chat_tool for t in tools]
    for step in range(max_steps):
        response: ChatCompletion = client.chat.completions.create(
            model=model, messages=history, tools=definitions, **create_options
        )
        calls = _chat_turn(response, history)
        if not calls or step == max_steps - 1:
            return response
        history += [_run_one(by_name, call) for call in calls]
    raise AssertionError("unreachable: max_steps >= 1")


async def arun_tools(
    client: openai.AsyncOpenAI,
    *,
    model: str,
    messages: Iterable[Any],
    tools: Sequence[SecurePyTool],
    max_steps: int = 10,
    **create_options: Any,
) -> ChatCompletion:
    """Async counterpart of :func:`run_tools`; same arguments, with an ``openai.AsyncOpenAI``."""
    by_name, history = _chat_start(messages, tools, max_steps)
    definitions: list[Any] = [t.chat_tool for t in tools]
    for step in range(max_steps):
        response: ChatCompletion = await client.chat.completions.create(
            model=model, messages=history, tools=definitions, **create_options
        )
        calls = _chat_turn(response, history)
        if not calls or step == max_steps - 1:
            return response
        history += [await _arun_one(by_name, call) for call in calls]
    raise AssertionError("unreachable: max_steps >= 1")


def run_response_tools(
    client: openai.OpenAI,
    *,
    model: str,
    input: str | Iterable[Any],
    tools: Sequence[SecurePyTool],
    max_steps: int = 10,
    free_form: bool = False,
    **create_options: Any,
) -> Response:
    """Run a Responses API tool loop and return the final response.

    The output items of each response are sent back with the tool outputs, so the loop also
    works with ``store=False``.

    Args:
        client: an ``openai.OpenAI`` client.
        model: the model name.
        input: the input text or items; not modified.
        tools: the sandbox tools the model may call.
        max_steps: most model requests. When reached, the last response is returned as it is,
            its tool calls not run.
        free_form: send each tool as its ``custom_tool`` (raw Python input) instead of its
            ``response_tool`` (JSON arguments).
        **create_options: passed to ``client.responses.create`` (not ``stream``).

    Returns:
        The last ``Response``; its ``output_text`` is the model's answer.

    Raises:
        ValueError: ``max_steps`` is below 1, or two tools share a name.
    """
    by_name, items = _responses_start(input, tools, max_steps)
    definitions: list[Any] = [t.custom_tool if free_form else t.response_tool for t in tools]
    for step in range(max_steps):
        response: Response = client.responses.create(
            model=model, input=items, tools=definitions, **create_options
        )
        calls = _responses_turn(response, items)
        if not calls or step == max_steps - 1:
            return response
        items += [_run_one(by_name, call) for call in calls]
    raise AssertionError("unreachable: max_steps >= 1")


async def arun_response_tools(
    client: openai.AsyncOpenAI,
    *,
    model: str,
    input: str | Iterable[Any],
    tools: Sequence[SecurePyTool],
    max_steps: int = 10,
    free_form: bool = False,
    **create_options: Any,
) -> Response:
    """Async counterpart of :func:`run_response_tools`; same arguments, with an
    ``openai.AsyncOpenAI``."""
    by_name, items = _responses_start(input, tools, max_steps)
    definitions: list[Any] = [t.custom_tool if free_form else t.response_tool for t in tools]
    for step in range(max_steps):
        response: Response = await client.responses.create(
            model=model, input=items, tools=definitions, **create_options
        )
        calls = _responses_turn(response, items)
        if not calls or step == max_steps - 1:
            return response
        items += [await _arun_one(by_name, call) for call in calls]
    raise AssertionError("unreachable: max_steps >= 1")


def _chat_start(
    messages: Iterable[Any], tools: Sequence[SecurePyTool], max_steps: int
) -> tuple[dict[str, SecurePyTool], list[Any]]:
    return _tools_by_name(tools, max_steps), list(messages)


def _responses_start(
    input: str | Iterable[Any], tools: Sequence[SecurePyTool], max_steps: int
) -> tuple[dict[str, SecurePyTool], list[Any]]:
    items = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
    return _tools_by_name(tools, max_steps), items


def _tools_by_name(tools: Sequence[SecurePyTool], max_steps: int) -> dict[str, SecurePyTool]:
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    by_name = {t.name: t for t in tools}
    if len(by_name) != len(tools):
        raise ValueError(f"two tools share a name: {[t.name for t in tools]}")
    return by_name


def _chat_turn(response: Any, history: list[Any]) -> list[ToolCall]:
    """Append the assistant message to ``history``; return the tool calls it makes."""
    message = response.choices[0].message
    history.append(message.model_dump(exclude_none=True))
    return [read_call(call) for call in message.tool_calls or ()]


def _responses_turn(response: Any, items: list[Any]) -> list[ToolCall]:
    """Append the response's output items to ``items``; return the tool calls among them."""
    items += [item.model_dump(exclude_none=True) for item in response.output]
    return [
        read_call(item)
        for item in response.output
        if item.type in ("function_call", "custom_tool_call")
    ]


def _run_one(by_name: dict[str, SecurePyTool], call: ToolCall) -> dict[str, Any]:
    tool = by_name.get(call.name)
    return tool.handle(call) if tool is not None else _unknown_tool(by_name, call)


async def _arun_one(by_name: dict[str, SecurePyTool], call: ToolCall) -> dict[str, Any]:
    tool = by_name.get(call.name)
    return await tool.ahandle(call) if tool is not None else _unknown_tool(by_name, call)


def _unknown_tool(by_name: dict[str, SecurePyTool], call: ToolCall) -> dict[str, Any]:
    return reply_to(
        call,
        f"Error: there is no tool named {call.name!r}; available: {', '.join(map(repr, by_name))}.",
    )
