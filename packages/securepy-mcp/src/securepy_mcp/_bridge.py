"""Code mode: the tools of an MCP server as securepy tools, called from sandboxed code.

Each MCP tool becomes a :class:`securepy.Tool` with the server's name (made a Python identifier),
description and input schema. The sandboxed code calls it as a plain function; the call goes to
the host, where the MCP client session sends ``tools/call`` and turns the result into a plain
Python value.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import mcp
import securepy
from mcp.types import PaginatedRequestParams, Tool

from ._names import python_names
from ._results import plain_value
from ._servers import ServerSpec, describe_server, open_client

__all__ = ["McpTools", "from_mcp_session", "mcp_tools"]

logger = logging.getLogger("securepy.mcp")

DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_CALL_TIMEOUT = 60.0


_ToolSession = mcp.Client | mcp.ClientSession


def mcp_tools(
    server: ServerSpec,
    *,
    timeout: float | None = DEFAULT_CALL_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    reserved: Iterable[str] = (),
    **tool_options: Any,
) -> McpTools:
    """The tools of an MCP server as securepy tools, for as long as the block runs.

    Use ``async with mcp_tools(server) as tools:`` in async code (the client runs on your event
    loop) or ``with mcp_tools(server) as tools:`` in sync code (the client then runs on an
    event loop thread of its own). Either way the tools work from a ``securepy.Session`` and an
    ``securepy.AsyncSession``.

    Example:
        >>> import sys, securepy, securepy_mcp
        >>> server = {"command": sys.executable, "args": ["-c", "..."]}   # doctest: +SKIP
        >>> with securepy_mcp.mcp_tools(server) as tools:                  # doctest: +SKIP
        ...     with securepy.Session(tools=tools) as session:
        ...         session.execute("add(a=1, b=2)").value

    Args:
        server: ``mcp.StdioServerParameters``, an ``http(s)://`` URL (streamable HTTP), or one
            entry of an ``{"mcpServers": {...}}`` config (``{"command", "args", "env", "cwd"}``
            or ``{"url", "headers"}``).
        timeout: seconds one tool call may take (the MCP read timeout, and the securepy tool
            timeout); None for none.
        connect_timeout: seconds to start the server and list its tools (``with`` form).
        reserved: names already taken in the session (other tools); a clashing MCP tool is
            renamed by :func:`python_names`' rule.
        **tool_options: ``max_calls`` or ``approve``, passed to each ``securepy.Tool``.

    Returns:
        An :class:`McpTools` context manager yielding a list of ``securepy.Tool``.

    Raises:
        TypeError: ``server`` is none of the accepted kinds.
        ValueError: a config entry is malformed (the message names the key).
    """
    client = open_client(server)  # checks the spec now, not at enter
    return McpTools(
        client,
        describe_server(server),
        timeout=timeout,
        connect_timeout=connect_timeout,
        reserved=reserved,
        tool_options=tool_options,
    )


async def from_mcp_session(
    session: mcp.Client | mcp.ClientSession,
    *,
    timeout: float | None = DEFAULT_CALL_TIMEOUT,
    reserved: Iterable[str] = (),
    **tool_options: Any,
) -> list[securepy.Tool]:
    """The tools of an already open MCP client session as securepy tools.

    The tools call through ``session``, on the event loop it runs on; keep it open while they
    are in use.

    Args:
        session: an entered ``mcp.Client`` or an initialised ``mcp.ClientSession``.
        timeout: seconds one tool call may take; None for none.
        reserved: names already taken in the session; see :func:`mcp_tools`.
        **tool_options: ``max_calls`` or ``approve``, passed to each ``securepy.Tool``.

    Returns:
        One ``securepy.Tool`` per MCP tool, in the server's order (names mapped by
        :func:`python_names`).
    """
    return await _convert(
        session,
        asyncio.get_running_loop(),
        blocking=False,
        timeout=timeout,
        reserved=reserved,
        tool_options=tool_options,
    )


@typing.final
class McpTools:
    """The context manager :func:`mcp_tools` returns; both ``with`` and ``async with``.

    Attributes:
        tools: the converted tools while the block runs (empty before and after).
    """

    def __init__(
        self,
        client: mcp.Client,
        description: str,
        *,
        timeout: float | None,
        connect_timeout: float,
        reserved: Iterable[str],
        tool_options: Mapping[str, Any],
    ) -> None:
        self._client = client
        self._description = description
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._tool_options = dict(tool_options)
        self._reserved = list(reserved)
        self._entered = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._holder: concurrent.futures.Future[None] | None = None
        self.tools: list[securepy.Tool] = []

    def __repr__(self) -> str:
        return f"<securepy_mcp.McpTools {self._description} tools={len(self.tools)}>"

    async def __aenter__(self) -> list[securepy.Tool]:
        self._claim()
        try:
            await self._client.__aenter__()
        except Exception as exc:
            raise _unreachable(self._description, exc) from exc
        try:
            self.tools = await _convert(
                self._client,
                asyncio.get_running_loop(),
                blocking=False,
                timeout=self._timeout,
                reserved=self._reserved,
                tool_options=self._tool_options,
            )
        except BaseException:
            await self._client.__aexit__(None, None, None)
            raise
        return self.tools

    async def __aexit__(self, *exc_info: Any) -> None:
        self.tools = []
        await self._client.__aexit__(*exc_info)

    def __enter__(self) -> list[securepy.Tool]:
        self._claim()
        loop = asyncio.new_event_loop()
        self._loop, self._stop = loop, asyncio.Event()
        self._thread = threading.Thread(
            target=loop.run_forever, name="securepy-mcp-client", daemon=True
        )
        self._thread.start()
        ready: concurrent.futures.Future[list[securepy.Tool]] = concurrent.futures.Future()
        self._holder = asyncio.run_coroutine_threadsafe(self._hold(ready), loop)
        try:
            self.tools = ready.result(timeout=self._connect_timeout)
        except concurrent.futures.TimeoutError:
            self._shut_down()
            raise TimeoutError(
                f"the MCP server {self._description} did not start and list its "
                f"tools within {self._connect_timeout} s (connect_timeout=)"
            ) from None
        except BaseException:
            self._shut_down()
            raise
        return self.tools

    def __exit__(self, *exc_info: object) -> None:
        self.tools = []
        self._shut_down()

    def _claim(self) -> None:
        if self._entered:
            raise RuntimeError("an McpTools object is entered once; call mcp_tools() again")
        self._entered = True

    async def _hold(self, ready: concurrent.futures.Future[list[securepy.Tool]]) -> None:
        """Keep the client open on the loop thread (anyio needs one task to enter and exit)."""
        assert self._stop is not None
        try:
            async with self._client as client:
                tools = await _convert(
                    client,
                    asyncio.get_running_loop(),
                    blocking=True,
                    timeout=self._timeout,
                    reserved=self._reserved,
                    tool_options=self._tool_options,
                )
                ready.set_result(tools)
                await self._stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(_unreachable(self._description, exc))
            else:  # a server that died mid-session fails its tool calls; closing stays quiet
                logger.debug("MCP client for %s ended with %r", self._description, exc)

    def _shut_down(self) -> None:
        loop, thread, holder, stop = self._loop, self._thread, self._holder, self._stop
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if holder is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
            try:
                holder.result(timeout=10)
            except concurrent.futures.TimeoutError:
                holder.cancel()
                with contextlib.suppress(BaseException):
                    holder.result(timeout=5)
            except BaseException:  # already delivered to the caller, or logged in _hold
                pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _convert(
    session: _ToolSession,
    loop: asyncio.AbstractEventLoop,
    *,
    blocking: bool,
    timeout: float | None,
    reserved: Iterable[str],
    tool_options: Mapping[str, Any],
) -> list[securepy.Tool]:
    listed = await _list_all(session)
    tools = []
    names = python_names((t.name for t in listed), reserved)
    for mcp_tool, name in zip(listed, names, strict=True):
        call = _caller(session, mcp_tool.name, mcp_tool.output_schema, loop, blocking, timeout)
        try:
            tools.append(
                securepy.Tool(
                    name,
                    mcp_tool.description or "",
                    call,
                    parameters=dict(mcp_tool.input_schema),
                    timeout=timeout,
                    **tool_options,
                )
            )
        except ValueError as exc:
            raise ValueError(
                f"MCP tool {mcp_tool.name!r} cannot be offered to the sandbox: {exc}"
            ) from exc
    return tools


async def _list_all(session: _ToolSession) -> list[Tool]:
    listed: list[Tool] = []
    cursor: str | None = None
    while True:  # a Client and a ClientSession page differently
        if isinstance(session, mcp.Client):
            page = await session.list_tools(cursor=cursor)
        else:
            page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
        listed.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return listed


def _caller(
    session: _ToolSession,
    mcp_name: str,
    output_schema: Mapping[str, Any] | None,
    loop: asyncio.AbstractEventLoop,
    blocking: bool,
    timeout: float | None,
) -> Callable[..., Any]:
    """The host function of one tool: sends ``tools/call`` and returns a plain value."""

    async def call_here(arguments: dict[str, Any]) -> Any:
        try:
            result = await session.call_tool(mcp_name, arguments, read_timeout_seconds=timeout)
        except Exception as exc:  # the server died, timed out or refused: the code can catch it
            raise securepy.ToolError(f"the MCP server failed: {_reason(exc)}") from exc
        return plain_value(mcp_name, result, output_schema)

    if blocking:

        def call(**arguments: Any) -> Any:
            try:
                future = asyncio.run_coroutine_threadsafe(call_here(arguments), loop)
            except RuntimeError as exc:  # the client's loop has ended
                raise securepy.ToolError("the MCP client is closed") from exc
            return future.result()

        return call

    async def acall(**arguments: Any) -> Any:
        if asyncio.get_running_loop() is loop:
            return await call_here(arguments)
        # A sync Session runs an async tool on a loop of its own; the client lives on `loop`.
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(call_here(arguments), loop)
        )

    return acall


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unreachable(description: str, exc: BaseException) -> ConnectionError:
    return ConnectionError(f"cannot use the MCP server {description}: {_reason(exc)}")
