"""The sandbox as an OpenAI tool: definitions for each API, and a handler for its calls."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import securepy
from securepy.adapters import (
    DEFAULT_TEXT_CHARS,
    RunOutcome,
    SandboxRunner,
    SandboxToolMixin,
    code_schema,
    describe_image,
    field_of,
)

from ._convert import convert

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionToolParam
    from openai.types.responses import (
        CustomToolParam,
        FunctionToolParam,
        ResponseInputImageContentParam,
        ResponseInputTextContentParam,
    )

__all__ = ["SecurePyTool", "securepy_tool"]

# The one argument, as a strict schema (every property required, no extra keys).
CODE_PARAMETERS: dict[str, Any] = code_schema()
_OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def securepy_tool(
    *,
    tools: Iterable[Any] = (),
    session: securepy.Session | securepy.AsyncSession | None = None,
    pool: securepy.SessionPool | securepy.AsyncSessionPool | None = None,
    name: str = "run_python",
    description: str | None = None,
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
    **session_options: Any,
) -> SecurePyTool:
    """The sandbox as an OpenAI tool, for Chat Completions and the Responses API.

    The tool creates (lazily) and owns a session, or uses the ``session`` or ``pool`` you pass
    and leaves it open. Its description lists the host ``tools`` as Python signatures.

    Args:
        tools: host tools callable inside the sandbox: securepy Tools, typed functions,
            ``(definition, fn)`` pairs (an OpenAI function definition and its host
            implementation) and Agents SDK ``FunctionTool`` objects, mixed; each native one is
            converted with :func:`from_openai_tool`.
        session: a Session or AsyncSession to use instead of creating one.
        pool: a SessionPool or AsyncSessionPool to use instead of creating a session.
        name: the tool name the model sees (``^[a-zA-Z0-9_-]{1,64}$``).
        description: the description the model sees; default: what the sandbox offers plus
            the host tools' signatures.
        timeout: seconds per run; None for none.
        max_output_chars: bound on the text sent back to the model.
        **session_options: options for the session the tool creates (see securepy.Session;
            ``sanitize_errors`` defaults to True here).

    Returns:
        A :class:`SecurePyTool`.

    Raises:
        ValueError: ``name`` is not a valid OpenAI tool name.
        TypeError: both ``session`` and ``pool`` given, an unknown session option, or a tool
            of an unknown kind.
    """
    if not _OPENAI_NAME.match(name):
        raise ValueError(f"OpenAI tool names must match ^[a-zA-Z0-9_-]{{1,64}}$, got {name!r}")
    return SecurePyTool(
        SandboxRunner(
            tools=tools,
            session=session,
            pool=pool,
            name=name,
            description=description,
            timeout=timeout,
            max_output_chars=max_output_chars,
            convert=convert,
            framework="OpenAI",
            **session_options,
        )
    )


@typing.final
class SecurePyTool(SandboxToolMixin):
    """The sandbox as an OpenAI tool; made by :func:`securepy_tool`.

    Send one of :attr:`chat_tool`, :attr:`response_tool` or :attr:`custom_tool` to the model,
    and pass each call it makes to :meth:`handle` (or :meth:`ahandle` with an async client);
    append what comes back to the conversation. A run that displays images (a matplotlib
    figure, ``display()``) answers a Responses call with an ``output`` list: an ``input_text``
    item, then an ``input_image`` item (a base64 data URL) per image, at most
    ``securepy.adapters.MAX_MODEL_IMAGES``; Chat Completions tool messages carry text only, so
    there each image is a note in the text. Has ``name``, ``description``, ``tools``,
    ``close()``, and is usable as a context manager.
    """

    def __init__(self, runner: SandboxRunner) -> None:
        self._runner = runner

    @property
    def runner(self) -> SandboxRunner:
        """The shared runner behind this tool (``securepy.adapters.SandboxRunner``)."""
        return self._runner

    @property
    def chat_tool(self) -> ChatCompletionToolParam:
        """The Chat Completions function tool, with a strict schema."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": code_schema(),
                "strict": True,
            },
        }

    @property
    def response_tool(self) -> FunctionToolParam:
        """The Responses API function tool, with a strict schema."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": code_schema(),
            "strict": True,
        }

    @property
    def custom_tool(self) -> CustomToolParam:
        """The Responses API free-form custom tool: the model sends raw Python, no JSON."""
        return {
            "type": "custom",
            "name": self.name,
            "format": {"type": "text"},
            "description": self.description + "\nSend the Python source itself as input.",
        }

    def handle(self, call: Any) -> dict[str, Any]:
        """Run one tool call and return the reply to append to the conversation.

        Args:
            call: a Chat Completions tool call, a Responses ``function_call`` item or a
                ``custom_tool_call`` item; an SDK object or a plain dict.

        Returns:
            ``{"role": "tool", ...}`` for a Chat tool call, else a ``function_call_output`` or
            ``custom_tool_call_output`` item. Failures of the code (errors, timeouts, denied
            tool calls) and malformed arguments become readable text in it.

        Raises:
            TypeError: ``call`` is not a tool call of any of these kinds.
            securepy.errors.SandboxUnavailableError: the sandbox cannot start on this host (a
                setup problem for the developer, not something the model can fix).
        """
        parsed = read_call(call)
        arguments = self._arguments_of(parsed)
        if not isinstance(arguments, RunOutcome):
            arguments = self._runner.run_arguments(arguments)
        return _reply_with_outcome(parsed, arguments)

    async def ahandle(self, call: Any) -> dict[str, Any]:
        """Async counterpart of :meth:`handle`; same arguments."""
        parsed = read_call(call)
        arguments = self._arguments_of(parsed)
        if not isinstance(arguments, RunOutcome):
            arguments = await self._runner.arun_arguments(arguments)
        return _reply_with_outcome(parsed, arguments)

    def _arguments_of(self, call: ToolCall) -> Any:
        """The call's decoded arguments, or (as an error outcome) why there are none: a call
        of another tool, or arguments that are not JSON."""
        if call.name != self.name:
            text = f"Error: there is no tool named {call.name!r}; call {self.name!r}."
            return RunOutcome(text, True)
        if call.free_form:
            return {"code": call.payload}
        try:
            return json.loads(call.payload)
        except (ValueError, RecursionError) as exc:  # deep nesting exhausts the parser's stack
            send = '{"code": "<python source>"}'
            return RunOutcome(
                f"Error: the arguments are not valid JSON ({exc}); send {send}.", True
            )


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call read from any of the API shapes.

    Attributes:
        reply_type: what answers it: "tool" (a Chat role-tool message),
            "function_call_output" or "custom_tool_call_output" (Responses items).
        call_id: the id the reply must carry.
        name: the tool the model called.
        payload: the JSON arguments, or a custom tool's raw input.
        free_form: True for a custom tool call (the payload is the code itself).
    """

    reply_type: str
    call_id: str
    name: str
    payload: str
    free_form: bool


def read_call(call: Any) -> ToolCall:
    """Read a Chat tool call, a Responses function_call or custom_tool_call (object or dict)."""
    if isinstance(call, ToolCall):
        return call
    kind = field_of(call, "type")
    if kind in ("function_call", "custom_tool_call"):
        free_form = kind == "custom_tool_call"
        payload = field_of(call, "input" if free_form else "arguments")
        return ToolCall(
            f"{kind}_output",
            _text(field_of(call, "call_id")),
            _text(field_of(call, "name")),
            _text(payload),
            free_form,
        )
    inner = field_of(call, "function") or field_of(call, "custom")
    if inner is not None:
        free_form = field_of(call, "function") is None
        payload = field_of(inner, "input" if free_form else "arguments")
        return ToolCall(
            "tool",
            _text(field_of(call, "id")),
            _text(field_of(inner, "name")),
            _text(payload),
            free_form,
        )
    raise TypeError(
        f"expected a Chat Completions tool call or a Responses function_call / "
        f"custom_tool_call item, got {type(call).__name__} {call!r:.200}"
    )


def reply_to(call: ToolCall, text: str) -> dict[str, Any]:
    """The reply item for ``call`` carrying ``text``."""
    if call.reply_type == "tool":
        return {"role": "tool", "tool_call_id": call.call_id, "content": text}
    return {"type": call.reply_type, "call_id": call.call_id, "output": text}


_CHAT_ONLY_TEXT = "Chat Completions tool results carry text only"


def _reply_with_outcome(call: ToolCall, outcome: RunOutcome) -> dict[str, Any]:
    if not outcome.images:
        return reply_to(call, outcome.text)
    if call.reply_type == "tool":
        notes = [describe_image(image, _CHAT_ONLY_TEXT) for image in outcome.images]
        return reply_to(call, "\n".join([outcome.text, *notes]))
    output: list[ResponseInputTextContentParam | ResponseInputImageContentParam] = [
        {"type": "input_text", "text": outcome.text}
    ]
    # detail is optional in a function_call_output but required in a custom_tool_call_output.
    output += [
        {"type": "input_image", "image_url": image.data_url, "detail": "auto"}
        for image in outcome.images
    ]
    return {"type": call.reply_type, "call_id": call.call_id, "output": output}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
