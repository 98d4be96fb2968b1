"""The sandbox as a model's tool, before any framework's idiom: :class:`SandboxRunner` runs code
for a model and turns every result and failure into text (:class:`RunOutcome`);
:func:`host_tool` builds a securepy Tool around a framework's native tool."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import typing
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._config import OnOutput, make_config
from ._execution import DEFAULT_TEXT_CHARS
from ._model_images import ModelImage, model_images
from ._model_text import describe_error, describe_sandbox, shorten
from ._pool import AsyncSessionPool, SessionPool
from ._session import AsyncSession, Session
from ._tool_doc import return_type_text
from ._tools import Tool, collect_tools
from .errors import SandboxUnavailableError, SecurePyError

__all__ = [
    "AnySession",
    "Convert",
    "RunOutcome",
    "SandboxRunner",
    "SandboxToolMixin",
    "convert_tools",
    "field_of",
    "host_tool",
]

Convert = Callable[[Any], "Tool | None"]


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
                f"{shorten(item, 80)}"
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


def field_of(item: Any, key: str) -> Any:
    """``item[key]`` for a mapping, else ``item.key``; None when absent (SDK objects and the
    dicts users write for them read alike)."""
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)
