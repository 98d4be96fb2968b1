"""The sandbox as an MCP server: one ``run_python`` tool, a persistent sandbox per client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Annotated, Any

import securepy
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import Field
from securepy.adapters import DEFAULT_TEXT_CHARS, SandboxRunner, describe_error

from ._bridge import DEFAULT_CALL_TIMEOUT, mcp_tools
from ._sandboxes import STDIO_KEY, Sandboxes
from ._servers import ServerSpec

__all__ = ["SESSION_META_KEY", "SecurePyServer", "server"]

SESSION_META_KEY = "securepy/session_id"
_CODE = "Python source to run; the last expression's value is shown."
_SESSION_ID = (
    "Only for clients without a protocol session (stateless HTTP): the session_id "
    "a previous run_python result gave, to keep that session's variables. Leave it "
    "out otherwise."
)
# Output streamed as progress messages is bounded per run: the result holds all of it anyway.
_MAX_STREAMED_CHARS = 64 * 1024


@typing.final
class SecurePyServer(MCPServer[Any]):
    """An ``mcp.server.MCPServer`` serving ``run_python``, as :func:`server` builds it.

    Attributes:
        sandboxes: the live sandboxes by client (None until the server runs).
    """

    sandboxes: Sandboxes | None


def server(
    tools: Iterable[securepy.Tool | Callable[..., Any]] = (),
    *,
    mcp_servers: Mapping[str, ServerSpec] | None = None,
    name: str = "securepy",
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
    max_sessions: int = 4,
    idle_timeout: float | None = 30 * 60,
    **session_options: Any,
) -> SecurePyServer:
    """An MCP server whose ``run_python`` tool runs code in a persistent securepy sandbox.

    Each MCP client gets its own sandbox session, checked out of a pool (so a new client does
    not wait for a start) when it first calls ``run_python`` and closed when the client goes
    away. The tool's description lists the host tools as Python signatures.

    Example:
        >>> import securepy_mcp
        >>> app = securepy_mcp.server(sandbox=False)
        >>> app.name
        'securepy'

    Args:
        tools: host functions callable from the code (securepy Tools or typed functions).
        mcp_servers: other MCP servers whose tools the code may call, as an ``mcpServers``
            mapping (name -> stdio parameters, URL or config entry); connected while the server
            runs (see :func:`securepy_mcp.mcp_tools`).
        name: the server's name, as clients show it.
        timeout: seconds per run; None for none.
        max_output_chars: bound on the text a run returns.
        max_sessions: sandboxes open at once (clients served concurrently); the pool size.
        idle_timeout: seconds after which an unused sandbox of an HTTP client is closed.
        **session_options: options of :class:`securepy.Session` (``sandbox``, ``limits``,
            ``wall``, ``mounts``, ...), shared by every sandbox.

    Returns:
        A :class:`SecurePyServer`; run it with :func:`securepy_mcp.serve`, its ``run()``, or
        mount its ``streamable_http_app()``.

    Raises:
        TypeError: an unknown session option.
        ValueError: ``max_sessions`` is not positive, or a bad option value.
    """
    host_tools = list(tools)
    if not isinstance(max_sessions, int) or max_sessions <= 0:
        raise ValueError(f"max_sessions must be a positive integer, got {max_sessions!r}")
    # Checks the options and tools now, so a typo fails here, not when the first client calls.
    runner = SandboxRunner(
        tools=host_tools, timeout=timeout, max_output_chars=max_output_chars, **session_options
    )
    bridged = dict(mcp_servers or {})

    @contextlib.asynccontextmanager
    async def lifespan(app: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        assert isinstance(app, SecurePyServer)
        async with contextlib.AsyncExitStack() as stack:
            all_tools = list(runner.tools.values())
            for entry in bridged.values():
                all_tools += await stack.enter_async_context(
                    mcp_tools(
                        entry, timeout=DEFAULT_CALL_TIMEOUT, reserved=[t.name for t in all_tools]
                    )
                )
            if len(all_tools) > len(runner.tools):
                _register(app, _description_of(all_tools, session_options), max_output_chars)
            pool = securepy.AsyncSessionPool(
                max_sessions,
                tools=all_tools,
                timeout=timeout,
                acquire_timeout=30,
                **session_options,
            )
            stack.push_async_callback(pool.close)
            app.sandboxes = Sandboxes(pool, idle_timeout=idle_timeout)
            stack.callback(app.sandboxes.shut)
            reaper = asyncio.ensure_future(app.sandboxes.reap_forever())
            stack.push_async_callback(_cancel_and_wait, reaper)
            yield {}

    # The SDK configures the root logger at log_level: at INFO, securepy's line per run and per
    # tool call would flood the client's log of the server's stderr.
    app = SecurePyServer(
        name, instructions=runner.description, lifespan=lifespan, log_level="WARNING"
    )
    app.sandboxes = None
    _register(app, runner.description, max_output_chars)
    return app


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _description_of(tools: list[securepy.Tool], session_options: Mapping[str, Any]) -> str:
    return SandboxRunner(tools=tools, **session_options).description


def _register(app: SecurePyServer, description: str, max_output_chars: int) -> None:
    async def run_python(
        code: Annotated[str, Field(description=_CODE)],
        ctx: Context,
        session_id: Annotated[str | None, Field(description=_SESSION_ID)] = None,
    ) -> CallToolResult:
        sandboxes = app.sandboxes
        if sandboxes is None:
            return _error("the server is not running")
        key, minted = _client_key(ctx, session_id, sandboxes)
        if key is None:
            return _error(
                f"unknown or expired session_id {session_id!r}: call run_python "
                "without session_id to start a new session (its state is gone)"
            )
        streamer = _Streamer(ctx)
        try:
            async with sandboxes.use(key) as session:
                execution = await session.execute(code, on_output=streamer.on_output)
        except securepy.SecurePyError as exc:
            result = _error(describe_error(exc, max_output_chars))
        else:
            result = _success(execution, max_output_chars)
        finally:
            await streamer.flush()
        if minted is not None:
            result.content.append(
                TextContent(
                    text=f'[session_id: {minted}; pass session_id="{minted}" to later run_python '
                    "calls to keep this session's variables]"
                )
            )
            result.meta = {SESSION_META_KEY: minted}
        return result

    with contextlib.suppress(Exception):
        app.remove_tool("run_python")
    app.add_tool(
        run_python,
        name="run_python",
        description=description,
        annotations=ToolAnnotations(
            title="Run Python in a sandbox", destructive_hint=False, open_world_hint=False
        ),
    )


def _client_key(
    ctx: Context, session_id: str | None, sandboxes: Sandboxes
) -> tuple[str | None, str | None]:
    """The client's sandbox key, and a newly minted session_id to give back (or None)."""
    headers = ctx.headers
    if headers is None:  # stdio: the process serves exactly one client
        return STDIO_KEY, None
    protocol_session = headers.get("mcp-session-id")
    # Only an id the server issued: on the stateless protocol path the SDK checks none.
    if protocol_session and sandboxes.issued(protocol_session):
        return "http:" + protocol_session, None
    if session_id:
        key = "handle:" + session_id
        return (key, None) if sandboxes.knows(key) else (None, None)
    handle = Sandboxes.new_handle()
    return "handle:" + handle, handle


class _Streamer:
    """Sends the code's output as progress notifications while it runs (when asked for)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._sent = 0
        self._last: asyncio.Task[None] | None = None

    def on_output(self, stream: str, text: str) -> None:
        if self._sent >= _MAX_STREAMED_CHARS:
            return
        text = text[: _MAX_STREAMED_CHARS - self._sent]
        self._sent += len(text)
        message = text if stream == "stdout" else f"[{stream}] {text}"
        self._last = asyncio.ensure_future(self._send(self._last, self._sent, message))

    async def flush(self) -> None:
        # Progress must not outlive its request: wait for what was queued.
        if self._last is not None:
            await asyncio.gather(self._last, return_exceptions=True)

    async def _send(self, previous: asyncio.Task[None] | None, progress: int, message: str) -> None:
        if previous is not None:  # in order: each waits for the one before
            await asyncio.gather(previous, return_exceptions=True)
        await self._ctx.report_progress(progress, None, message)


def _success(execution: securepy.Execution, max_chars: int) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(text=execution.render_text(max_chars))]
    for output in getattr(execution, "outputs", ()):
        for mime, data in getattr(output, "data", {}).items():
            if mime.startswith("image/") and isinstance(data, bytes):
                content.append(
                    ImageContent(data=base64.b64encode(data).decode("ascii"), mime_type=mime)
                )
    return CallToolResult(content=content)


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=text)], is_error=True)
