"""What every framework adapter shares: the sandbox as a "run Python" tool, in one shape.

An adapter (securepy-langchain, -openai, -anthropic, -llamaindex) is a thin layer over this
module. It builds one :class:`SandboxRunner` (passing ``convert=`` so its framework's native
tools can go straight into ``tools=``), offers the runner as its framework's own tool type with
the one argument described by :func:`code_schema`, and converts native tools into
:class:`securepy.Tool` objects with :func:`host_tool`. The runner owns a session it creates
(lazily, on first use; with ``sanitize_errors=True`` unless told otherwise, since its errors are
read by a model) or uses a session or pool the caller passes, and turns every result and every
failure into text a model can read, so an agent loop never breaks on an error in the code.

The run_python description lists each host tool as a Python stub: its signature with the return
type, its docstring, and an ``Args:`` section built from the argument descriptions in its schema
(when the docstring has none); ``help(name)`` inside the session shows the same. Each docstring
is cut to :data:`TOOL_DESCRIPTION_CHARS` (2,000) characters, with a marker line; once the
listing passes :data:`DESCRIPTION_BUDGET_CHARS` (16,000), the remaining tools are listed by
signature only, and a last line says so.

Images the code displays (``Execution.outputs``) reach the model as :class:`ModelImage` objects
on :attr:`RunOutcome.images`, which each adapter puts into its framework's own image block: at
most :data:`MAX_MODEL_IMAGES` per run, each at most :data:`MAX_MODEL_IMAGE_BYTES` and checked to
be the image format it claims; the rest are named in a note at the end of the text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import threading
import typing
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._config import OnOutput, make_config
from ._execution import DEFAULT_TEXT_CHARS, truncate_middle
from ._pool import AsyncSessionPool, SessionPool
from ._session import AsyncSession, Session
from ._tool_doc import TOOL_DOC_CHARS, return_type_text, stub_header, tool_stub
from ._tools import Tool, collect_tools
from .errors import ExecutionError, ExecutionTimeout, SandboxUnavailableError, SecurePyError

__all__ = [
    "CODE_DESCRIPTION",
    "DEFAULT_DESCRIPTION",
    "DEFAULT_TEXT_CHARS",
    "DESCRIPTION_BUDGET_CHARS",
    "MAX_MODEL_IMAGES",
    "MAX_MODEL_IMAGE_BYTES",
    "TOOL_DESCRIPTION_CHARS",
    "ModelImage",
    "RunOutcome",
    "SandboxRunner",
    "SandboxToolMixin",
    "code_problem",
    "code_schema",
    "describe_error",
    "describe_image",
    "describe_sandbox",
    "describe_tool",
    "field_of",
    "host_tool",
    "model_images",
]

DEFAULT_DESCRIPTION = (
    "Run Python code in a persistent, sandboxed CPython session: variables and imports are "
    "kept between calls, like a notebook. The sandbox has no network access and cannot read "
    "host files. Anything printed is returned, followed by the value of the last expression."
)
CODE_DESCRIPTION = (
    "Python source to run in the persistent sandboxed session; what it prints is returned, "
    "then the value of its last expression."
)
#: Most characters of one host tool's docstring, in the run_python description and in
#: ``help()`` inside the session (a marker line says when it was cut).
TOOL_DESCRIPTION_CHARS = TOOL_DOC_CHARS
#: Past this many characters of stubs, further host tools are listed by signature only.
DESCRIPTION_BUDGET_CHARS = 16000

#: Most images one run hands to the model; further ones are named in a note in the text.
MAX_MODEL_IMAGES = 4
#: Larger images are named in a note instead (Anthropic's API refuses images over 5 MB).
MAX_MODEL_IMAGE_BYTES = 5 * 1000 * 1000

Convert = Callable[[Any], "Tool | None"]

# The formats every adapter's API accepts, with the signature their bytes must start with (the
# child is hostile: a mislabelled image would make the model's API refuse the whole request).
_IMAGE_SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}


def code_schema() -> dict[str, Any]:
    """The run_python argument schema every adapter sends: one required ``code`` string.

    A fresh dict each call (callers and SDKs may mutate what they are given); strict-mode
    ready (no optional properties, ``additionalProperties: false``).
    """
    return {
        "type": "object",
        "properties": {"code": {"type": "string", "description": CODE_DESCRIPTION}},
        "required": ["code"],
        "additionalProperties": False,
    }


def code_problem(name: str, arguments: Any) -> str | None:
    """None when ``arguments`` is ``{"code": <str>}``; else the text telling the model why not.

    Args:
        name: the tool's name as the model sees it.
        arguments: the decoded arguments the model sent.
    """
    if isinstance(arguments, Mapping) and isinstance(arguments.get("code"), str):
        return None
    return (
        f'Error: {name} takes one argument, a "code" string, e.g. '
        f'{{"code": "print(1 + 1)"}}; got {_shorten(arguments)}.'
    )


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a model sees after one run.

    Attributes:
        text: the output and value (or the error), bounded to the runner's max_output_chars.
        is_error: True when the code raised, timed out, was refused or the session failed.
        execution: the :class:`securepy.Execution` when the run succeeded.
        error: the :class:`securepy.errors.SecurePyError` when it did not.
    """

    text: str
    is_error: bool
    execution: Any = None
    error: SecurePyError | None = None
    images: tuple[ModelImage, ...] = ()


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class ModelImage:
    """One image of a run, for the model.

    Attributes:
        mime_type: ``image/png``, ``image/jpeg`` or ``image/gif``.
        data: the image's bytes, checked to start with that format's signature.
    """

    mime_type: str
    data: bytes

    @property
    def base64(self) -> str:
        """The bytes in base64, as the APIs' inline image sources take them."""
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_url(self) -> str:
        """A ``data:`` URL of the image (OpenAI's ``image_url``)."""
        return f"data:{self.mime_type};base64,{self.base64}"


def model_images(
    outputs: Iterable[Any], max_images: int = MAX_MODEL_IMAGES
) -> tuple[tuple[ModelImage, ...], str]:
    """The images among ``outputs`` (``securepy.Output``) to show the model, and a note
    naming those left out and why ("" when none are).

    One image per output, its richest format; an output without a valid image is text only
    (already in ``Execution.render_text``).
    """
    shown: list[ModelImage] = []
    left_out: list[str] = []
    for output in outputs:
        for mime, signatures in _IMAGE_SIGNATURES.items():
            data = output.data.get(mime)
            if not isinstance(data, bytes):
                continue
            if not data.startswith(signatures):
                left_out.append(
                    f"[{mime} output: {len(data):,} bytes, not shown: not a valid {mime}]"
                )
            elif len(data) > MAX_MODEL_IMAGE_BYTES:
                left_out.append(
                    describe_image(ModelImage(mime, data), f"over {MAX_MODEL_IMAGE_BYTES:,} bytes")
                )
            elif len(shown) >= max_images:
                left_out.append(
                    describe_image(
                        ModelImage(mime, data), f"at most {max_images} images are shown per run"
                    )
                )
            else:
                shown.append(ModelImage(mime, data))
            break
    return tuple(shown), "\n".join(left_out)


def describe_image(image: ModelImage, why: str) -> str:
    """A note standing in for an image the model does not see, e.g.
    ``[image/png output: 12,345 bytes, not shown: <why>]``."""
    return f"[{image.mime_type} output: {len(image.data):,} bytes, not shown: {why}]"


AnySession = Session | AsyncSession | SessionPool | AsyncSessionPool


class SandboxRunner:
    """Runs model-written code for an adapter and renders the outcome for the model.

    Args:
        tools: securepy Tools, plain typed functions, and (with ``convert``) native tools.
        session: a Session or AsyncSession to use; it is left open.
        pool: a SessionPool or AsyncSessionPool to use instead; it is left open.
        name: the tool's name as the model sees it.
        description: the tool's description; default: :data:`DEFAULT_DESCRIPTION` plus a
            stub of each host tool (:func:`describe_sandbox`).
        timeout: seconds per run; None for none.
        max_output_chars: bound on the text the model sees.
        convert: the adapter's converter: returns a securepy Tool for one of its framework's
            native tools, None for anything else (kept as it is).
        framework: the framework's name, for the error naming what ``tools=`` accepts.
        **session_options: options for the session the runner creates when given neither
            ``session`` nor ``pool`` (see :class:`securepy.Session`). ``sanitize_errors``
            defaults to True here: the errors are read by a model.

    Raises:
        TypeError: both ``session`` and ``pool`` given, an unknown session option, or an item
            of ``tools`` that is none of the accepted kinds.
        ValueError: ``max_output_chars`` is not positive.
    """

    def __init__(
        self,
        *,
        tools: Iterable[Any] = (),
        session: Session | AsyncSession | None = None,
        pool: SessionPool | AsyncSessionPool | None = None,
        name: str = "run_python",
        description: str | None = None,
        timeout: float | None = 30,
        max_output_chars: int = DEFAULT_TEXT_CHARS,
        convert: Convert | None = None,
        framework: str | None = None,
        **session_options: Any,
    ) -> None:
        if session is not None and pool is not None:
            raise TypeError("pass session= or pool=, not both")
        if not isinstance(max_output_chars, int) or max_output_chars <= 0:
            raise ValueError(
                f"max_output_chars must be a positive integer, got {max_output_chars!r}"
            )
        owned_tools = collect_tools(convert_tools(tools, convert, framework))
        if (session is not None or pool is not None) and session_options:
            raise TypeError(
                f"session options ({', '.join(sorted(session_options))}) apply only to a "
                "session the tool creates; set them on the session or pool you pass instead"
            )
        if session is not None or pool is not None:
            target: Any = session if session is not None else pool
            if owned_tools:
                raise TypeError(
                    "tools= cannot be added to a session or pool you pass; give "
                    "the tools to that session or pool"
                )
            self.tools: dict[str, Tool] = dict(target.tools) if hasattr(target, "tools") else {}
        else:
            session_options.setdefault("sanitize_errors", True)
            # Checks the options now, so a typo fails here rather than at the first run.
            make_config(list(owned_tools.values()), timeout=timeout, **session_options)
            self.tools = owned_tools
        self.name = name
        self.description = (
            description if description is not None else describe_sandbox(self.tools.values())
        )
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self._target: AnySession | None = session if session is not None else pool
        self._session_options = session_options
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def session(self) -> AnySession | None:
        """The session or pool in use (None until an owned session is first needed)."""
        return self._target

    def run(self, code: str, *, on_output: OnOutput | None = None) -> RunOutcome:
        """Run ``code`` and return the outcome; never raises for a failure of the code.

        Args:
            code: the Python source.
            on_output: called as ``on_output(stream, text)`` while the code prints.

        Raises:
            securepy.errors.SandboxUnavailableError: the sandbox cannot start on this host (a
                setup problem for the developer, so it is not shown to the model).
        """
        with self._lock:
            target = self._sync_target()
        # A session runs one execute at a time: runs through this tool (several tool calls
        # of one model turn, say) wait their turn. A pool serves them concurrently.
        guard = self._lock if isinstance(target, Session) else contextlib.nullcontext()
        with guard:
            try:
                execution = target.execute(code, timeout=self.timeout, on_output=on_output)
            except SandboxUnavailableError:
                raise  # a setup problem for the developer, not something the model can fix
            except SecurePyError as exc:
                return self._failed(exc)
        return self._succeeded(execution)

    async def arun(self, code: str, *, on_output: OnOutput | None = None) -> RunOutcome:
        """Async counterpart of :meth:`run`; never blocks the event loop."""
        target = self._target
        if isinstance(target, AsyncSession | AsyncSessionPool):
            try:
                execution = await target.execute(code, timeout=self.timeout, on_output=on_output)
            except SandboxUnavailableError:
                raise
            except SecurePyError as exc:
                return self._failed(exc)
            return self._succeeded(execution)
        return await asyncio.to_thread(self.run, code, on_output=on_output)

    def close(self) -> None:
        """Close the session this runner created (a session or pool passed in stays open)."""
        if self._finalizer is not None:
            self._finalizer()

    def _sync_target(self) -> Session | SessionPool:
        if self._target is None:
            session = Session(
                list(self.tools.values()), timeout=self.timeout, **self._session_options
            )
            self._target = session
            self._finalizer = weakref.finalize(self, session.close)
        if isinstance(self._target, AsyncSession | AsyncSessionPool):
            raise TypeError(
                "this tool wraps an async session or pool: call it asynchronously "
                "(ainvoke / acall / ahandle)"
            )
        return self._target

    def _succeeded(self, execution: Any) -> RunOutcome:
        text = execution.render_text(self.max_output_chars)
        outputs = getattr(execution, "outputs", ())
        if not outputs:  # the common case costs nothing more
            return RunOutcome(text, False, execution)
        images, note = model_images(outputs)
        # The note goes after the bounded text, so the cut never hides it; it is bounded by
        # securepy's MAX_OUTPUTS outputs per execute.
        return RunOutcome(text + "\n" + note if note else text, False, execution, images=images)

    def _failed(self, error: SecurePyError) -> RunOutcome:
        return RunOutcome(describe_error(error, self.max_output_chars), True, error=error)


class SandboxToolMixin:
    """The face every adapter's ``SecurePyTool`` shares, over its ``_runner``: ``name``,
    ``description``, ``tools``, ``session``, ``close()`` and use as a context manager."""

    _runner: SandboxRunner

    @property
    def name(self) -> str:
        """The tool's name as the model sees it."""
        return self._runner.name

    @property
    def description(self) -> str:
        """The description the model sees, with a stub of each host tool."""
        return self._runner.description

    @property
    def tools(self) -> dict[str, Tool]:
        """The host tools callable from the code, by name."""
        return dict(self._runner.tools)

    @property
    def session(self) -> AnySession | None:
        """The session or pool in use (None until an owned session is first needed)."""
        return self._runner.session

    def close(self) -> None:
        """Close the session this tool created; a session or pool passed in stays open."""
        self._runner.close()

    def __enter__(self) -> typing.Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.SecurePyTool {self.name!r} tools={sorted(self.tools)}>"


def convert_tools(
    items: Iterable[Any], convert: Convert | None, framework: str | None = None
) -> list[Tool | Callable[..., Any]]:
    """``items`` with each native tool converted; securepy Tools and functions as they are.

    Raises:
        TypeError: an item is neither a securepy Tool, a function with a name that is a
            Python identifier, nor a native tool ``convert`` accepts.
    """
    if isinstance(items, Tool) or callable(items):
        items = [items]
    result: list[Tool | Callable[..., Any]] = []
    for item in items:
        converted = convert(item) if convert is not None and not isinstance(item, Tool) else None
        if converted is not None:
            result.append(converted)
        elif isinstance(item, Tool) or (
            callable(item) and str(getattr(item, "__name__", "")).isidentifier()
        ):
            result.append(item)
        else:
            native = f", {framework} tools" if framework else ""
            raise TypeError(
                f"tools= takes securepy Tools, typed functions{native}; got "
                f"{type(item).__module__}.{type(item).__qualname__} "
                f"{_shorten(item, 80)}"
            )
    return result


def host_tool(
    name: str,
    description: str,
    fn: Callable[..., Any],
    *,
    parameters: Mapping[str, Any],
    returns_like: Callable[..., Any] | None = None,
    **tool_options: Any,
) -> Tool:
    """A securepy Tool calling a native tool on the host, as every ``from_<fw>_tool`` builds it.

    Args:
        name: the function's name inside the sandbox.
        description: the native tool's description, kept as it is.
        fn: the host function (sync or async) taking the arguments as keywords.
        parameters: the native tool's argument schema, as the model would see it.
        returns_like: the native tool's own function, whose return annotation the stub in
            the run_python description shows.
        **tool_options: ``timeout``, ``max_calls``, ``approve`` (see :class:`securepy.Tool`).
    """
    returns = return_type_text(returns_like) if returns_like is not None else ""
    if returns_like is not fn:  # never rewrite the caller's own function
        annotations = dict(getattr(fn, "__annotations__", {}))
        annotations.pop("return", None)
        if returns:
            annotations["return"] = returns
        with contextlib.suppress(AttributeError, TypeError):
            fn.__annotations__ = annotations
    return Tool(name, description, fn, parameters=dict(parameters), **tool_options)


def describe_sandbox(tools: Iterable[Tool]) -> str:
    """:data:`DEFAULT_DESCRIPTION`, plus a Python stub of each host tool (:func:`describe_tool`).

    Budget: each stub's docstring is at most :data:`TOOL_DESCRIPTION_CHARS` characters (then
    cut, with a marker line); once the stubs pass :data:`DESCRIPTION_BUDGET_CHARS`, the
    remaining tools are listed by their ``def`` line only, and a last line says so (their
    docstrings stay readable inside the session through ``help(name)``).
    """
    listed: list[str] = []
    used = signature_only = 0
    for tool in tools:
        if used < DESCRIPTION_BUDGET_CHARS:
            stub = describe_tool(tool)
        else:
            stub = stub_header(tool) + " ..."
            signature_only += 1
        used += len(stub)
        listed.append(stub)
    if not listed:
        return DEFAULT_DESCRIPTION
    if signature_only:
        listed.append(
            f"[{signature_only} more host functions are listed by signature only: the "
            f"description's budget of {DESCRIPTION_BUDGET_CHARS:,} characters is spent; "
            "help(name) in the session shows a function's docstring.]"
        )
    return (
        DEFAULT_DESCRIPTION
        + "\nThese host functions are defined inside the session; call them like normal "
        "Python functions (they block until the host answers; a failure raises ToolError):\n\n"
        + "\n\n".join(listed)
    )


def describe_tool(tool: Tool, max_chars: int = TOOL_DESCRIPTION_CHARS) -> str:
    """One host tool as the model reads it: a ``def`` line with the return type, then a
    docstring with the whole description and each argument's description (from the
    description's own ``Args:`` section, else from the schema), cut to ``max_chars`` with a
    marker line. ``help(name)`` inside the session shows the same docstring."""
    return tool_stub(tool, max_chars)


def describe_error(error: SecurePyError, max_chars: int = DEFAULT_TEXT_CHARS) -> str:
    """A failure as text for a model: the output so far, then what went wrong."""
    parts = []
    stdout, stderr = getattr(error, "stdout", ""), getattr(error, "stderr", "")
    if stdout:
        parts.append(stdout.rstrip("\n"))
    if stderr:
        parts.append("[stderr]\n" + stderr.rstrip("\n"))
    if isinstance(error, ExecutionError):
        parts.append(error.traceback.rstrip("\n") or str(error))
    elif isinstance(error, ExecutionTimeout):
        parts.append(f"Error: {error}")
    else:
        parts.append(f"Error ({type(error).__name__}): {error}")
    return truncate_middle("\n".join(parts), max_chars)


def field_of(item: Any, key: str) -> Any:
    """``item[key]`` for a mapping, else ``item.key``; None when absent (SDK objects and the
    dicts users write for them read alike)."""
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


def _shorten(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
