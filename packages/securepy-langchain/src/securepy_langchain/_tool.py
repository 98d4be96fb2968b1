"""The sandbox as a LangChain tool: ``SecurePyTool``, a BaseTool taking one ``code`` string."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal

import securepy
from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages.content import (
    ImageContentBlock,
    TextContentBlock,
    create_image_block,
    create_text_block,
)
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic.v1 import ValidationError as ValidationErrorV1
from securepy.adapters import (
    CODE_DESCRIPTION,
    DEFAULT_TEXT_CHARS,
    RunOutcome,
    SandboxOwnerMixin,
    SandboxRunner,
    code_problem,
)

from ._convert import convert

__all__ = ["RunPythonInput", "SecurePyTool", "securepy_tool"]

# The ToolMessage content: text, or (when the code displayed images) standard content blocks.
Content = str | list[TextContentBlock | ImageContentBlock]


@typing.final
class RunPythonInput(BaseModel):
    """The one argument of the sandbox tool (``securepy.adapters.code_schema()``)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description=CODE_DESCRIPTION)


class SecurePyTool(SandboxOwnerMixin, BaseTool):
    """The sandbox as a LangChain tool: a persistent Python session the model writes code for.

    Construct it directly or through :func:`securepy_tool` (same arguments). It takes one
    argument, ``code``, and answers in LangChain's ``content_and_artifact`` form: the text the
    model reads (the output, then the last expression's value), with the
    :class:`securepy.Execution` as the ``ToolMessage``'s artifact. When the code displays
    images (a matplotlib figure, ``display()``), the content is a list of standard content
    blocks instead: the text block, then an image block (base64) per image, at most
    ``securepy.adapters.MAX_MODEL_IMAGES``. An exception in the code, a
    timeout, a refused host call and malformed arguments all come back as text with
    ``status="error"``, never as an exception in the agent loop. What the code prints is
    streamed to the run's callbacks (``on_text``) as it is printed.

    Args:
        tools: host functions callable from the code: LangChain tools (converted with
            :func:`from_langchain_tool`), securepy Tools and plain typed functions, mixed.
        session: a Session or AsyncSession to run the code in; it is left open.
        pool: a SessionPool or AsyncSessionPool instead; it is left open.
        name: the tool's name as the model sees it (default ``"run_python"``).
        description: replaces the generated description (which lists each host tool as a
            Python stub).
        timeout: seconds each run may take; None for no limit.
        max_output_chars: bound on the text the model sees; longer output is cut in the
            middle, with a visible note.
        **options: other BaseTool fields (``tags``, ``callbacks``, ...) and options for the
            session the tool creates (see :class:`securepy.Session`: ``sandbox=``,
            ``limits=``, ``sanitize_errors=`` (default True here), ...).

    Raises:
        TypeError: both ``session`` and ``pool``, ``tools=`` or session options with a
            session or pool, an unknown session option, or a tool of an unknown kind.
        ValueError: a tool cannot be converted, or ``max_output_chars`` is not positive.
    """

    name: str = "run_python"
    description: str = ""
    args_schema: type[BaseModel] = RunPythonInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    # Failed runs raise ToolException; LangChain turns it into the result, status="error".
    handle_tool_error: bool = True
    timeout: float | None = 30
    max_output_chars: int = DEFAULT_TEXT_CHARS
    _runner: SandboxRunner = PrivateAttr()

    def __init__(
        self,
        *,
        tools: Iterable[BaseTool | securepy.Tool | Callable[..., Any]] = (),
        session: securepy.Session | securepy.AsyncSession | None = None,
        pool: securepy.SessionPool | securepy.AsyncSessionPool | None = None,
        **options: Any,
    ) -> None:
        fields = {key: options.pop(key) for key in list(options) if key in type(self).model_fields}
        super().__init__(**fields)
        self._runner = SandboxRunner(
            tools=tools,
            session=session,
            pool=pool,
            name=self.name,
            description=self.description or None,
            timeout=self.timeout,
            max_output_chars=self.max_output_chars,
            convert=convert,
            framework="LangChain",
            **options,
        )
        self.description = self._runner.description
        # Malformed arguments (no "code", not a string) go back to the model as text.
        self.handle_validation_error = self._argument_error

    def _run(
        self, code: str, run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[Content, securepy.Execution]:
        outcome = self._runner.run(code, on_output=_streamed_to(run_manager))
        return _content_and_artifact(outcome)

    async def _arun(
        self, code: str, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[Content, securepy.Execution]:
        # The async manager's on_text is a coroutine: the runner awaits each on this loop.
        outcome = await self._runner.arun(code, on_output=_streamed_to(run_manager))
        return _content_and_artifact(outcome)

    def _argument_error(self, error: ValidationError | ValidationErrorV1) -> str:
        problems = error.errors()
        given = problems[0].get("input") if problems else None
        return code_problem(self.name, given) or f"Error: {error}"


def securepy_tool(
    *,
    tools: Iterable[BaseTool | securepy.Tool | Callable[..., Any]] = (),
    session: securepy.Session | securepy.AsyncSession | None = None,
    pool: securepy.SessionPool | securepy.AsyncSessionPool | None = None,
    name: str = "run_python",
    description: str | None = None,
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
    **session_options: Any,
) -> SecurePyTool:
    """The sandbox as a LangChain tool; the arguments are those of :class:`SecurePyTool`.

    Example:
        >>> from securepy_langchain import securepy_tool
        >>> def order_total(order_id: str) -> float:
        ...     "The total of an order, in euros."
        ...     return 42.5
        >>> sandbox = securepy_tool(tools=[order_total], sandbox=False)
        >>> sandbox.invoke({"code": "order_total('A1') * 2"})
        '85.0'
        >>> sandbox.close()

    Returns:
        A :class:`SecurePyTool`. Close it (``tool.close()``, or use it as a context manager)
        to stop a session it created; it is also stopped when the tool is garbage collected.

    Raises:
        TypeError, ValueError: as :class:`SecurePyTool`.
    """
    return SecurePyTool(
        tools=tools,
        session=session,
        pool=pool,
        name=name,
        description=description or "",
        timeout=timeout,
        max_output_chars=max_output_chars,
        **session_options,
    )


def _streamed_to(
    manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None,
) -> Callable[[str, str], Any] | None:
    """What the code prints, to the run's callbacks (``on_text``) as it is printed."""
    if manager is None:
        return None

    def on_output(stream: str, text: str) -> Any:
        return manager.on_text(text, stream=stream)

    return on_output


def _content_and_artifact(outcome: RunOutcome) -> tuple[Content, securepy.Execution]:
    if outcome.is_error:
        raise ToolException(outcome.text)
    if not outcome.images:
        return outcome.text, outcome.execution
    blocks: list[TextContentBlock | ImageContentBlock] = [create_text_block(outcome.text)]
    blocks += [
        create_image_block(base64=image.base64, mime_type=image.mime_type)
        for image in outcome.images
    ]
    return blocks, outcome.execution
