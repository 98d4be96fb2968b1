"""securepy and the OpenAI Agents SDK (``pip install "securepy-openai[agents]"``).

from agents import Agent
from securepy_openai.agents import securepy_function_tool

agent = Agent(name="analyst", tools=[securepy_function_tool(tools=[lookup_order])])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import securepy
from securepy.adapters import DEFAULT_TEXT_CHARS, code_schema

from ._convert import from_openai_tool
from ._tool import securepy_tool

try:
    from agents import FunctionTool, ToolOutputImage, ToolOutputText
    from agents.tool_context import ToolContext
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'securepy_openai.agents needs the OpenAI Agents SDK: pip install "securepy-openai[agents]"'
    ) from exc

__all__ = ["from_agents_tool", "securepy_function_tool"]

# FunctionTool's own policy fields (needs_approval, is_enabled, timeout_seconds, guardrails,
# ...), passed through; the ones this module sets itself are left out.
_FUNCTION_TOOL_FIELDS = frozenset(f.name for f in dataclasses.fields(FunctionTool)) - {
    "name",
    "description",
    "params_json_schema",
    "on_invoke_tool",
    "strict_json_schema",
}


def securepy_function_tool(
    *,
    tools: Iterable[Any] = (),
    session: securepy.Session | securepy.AsyncSession | None = None,
    pool: securepy.SessionPool | securepy.AsyncSessionPool | None = None,
    name: str = "run_python",
    description: str | None = None,
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
    **options: Any,
) -> FunctionTool:
    """The sandbox as an Agents SDK ``FunctionTool``; arguments as for ``securepy_tool``.

    Errors in the code, timeouts, denied tool calls and malformed arguments come back to the
    model as text; they never fail the run. A run that displays images (a matplotlib figure,
    ``display()``) answers with a ``ToolOutputText`` then a ``ToolOutputImage`` (a base64 data
    URL) per image, at most ``securepy.adapters.MAX_MODEL_IMAGES``, which the SDK sends as
    ``input_image`` items. A session the tool creates is closed when the
    FunctionTool is garbage-collected; pass ``session=`` or ``pool=`` to control its lifetime.

    Args:
        **options: ``FunctionTool``'s policy fields (``needs_approval``, ``is_enabled``,
            ``timeout_seconds``, ``tool_input_guardrails``, ... as this SDK version has them),
            passed to it; every other option is a session option, as for ``securepy_tool``.

    Returns:
        An ``agents.FunctionTool`` taking one ``code`` string.

    Raises:
        ValueError: ``name`` is not a valid OpenAI tool name.
        TypeError: both ``session`` and ``pool`` given, or an unknown session option.
    """
    policy = {key: options.pop(key) for key in list(options) if key in _FUNCTION_TOOL_FIELDS}
    sandbox = securepy_tool(
        tools=tools,
        session=session,
        pool=pool,
        name=name,
        description=description,
        timeout=timeout,
        max_output_chars=max_output_chars,
        **options,
    )

    async def run_code(
        context: ToolContext[Any], arguments: str
    ) -> str | list[ToolOutputText | ToolOutputImage]:
        reply = await sandbox.ahandle(
            {
                "type": "function_call",
                "call_id": context.tool_call_id,
                "name": sandbox.name,
                "arguments": arguments,
            }
        )
        return _agents_output(reply["output"])

    return FunctionTool(
        name=sandbox.name,
        description=sandbox.description,
        params_json_schema=code_schema(),
        on_invoke_tool=run_code,
        **policy,
    )


def _agents_output(output: Any) -> str | list[ToolOutputText | ToolOutputImage]:
    """A function_call_output's ``output`` as the SDK's tool output types."""
    if isinstance(output, str):
        return output
    return [
        ToolOutputText(text=item["text"])
        if item["type"] == "input_text"
        else ToolOutputImage(image_url=item["image_url"], detail="auto")
        for item in output
    ]


#: The earlier name of :func:`securepy_openai.from_openai_tool` for a FunctionTool; prefer
#: ``from_openai_tool``, which also takes definitions.
from_agents_tool = from_openai_tool
