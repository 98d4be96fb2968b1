"""Code mode: a real MCP server's tools called from sandboxed code, over stdio and HTTP."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import mcp
import pytest
import securepy
import securepy_mcp

from ..conftest import TwinSession
from .conftest import DEMO_SERVER

TRANSPORTS = ["stdio", "http"]


@pytest.fixture(params=TRANSPORTS)
def demo(
    request: pytest.FixtureRequest, demo_stdio: mcp.StdioServerParameters, demo_http_url: str
) -> Any:
    """The demo server's address over each transport (the HTTP one outlives the test)."""
    return demo_stdio if request.param == "stdio" else demo_http_url


@pytest.fixture(scope="module", params=TRANSPORTS)
def demo_tools(request: pytest.FixtureRequest, demo_http_url: str) -> Iterator[list[Any]]:
    """The demo server's tools over each transport, connected once for the module."""
    server: Any = demo_http_url
    if request.param == "stdio":
        server = mcp.StdioServerParameters(command=sys.executable, args=[str(DEMO_SERVER)])
    with securepy_mcp.mcp_tools(server) as tools:
        yield tools


def test_tools_keep_name_description_and_schema(demo: Any) -> None:
    with securepy_mcp.mcp_tools(demo) as tools:
        by_name = {tool.name: tool for tool in tools}
        assert list(by_name) == [
            "add",
            "get_user",
            "query_rows",
            "shout",
            "fail",
            "pixel",
            "die",
            "list_",
        ]
        assert by_name["add"].signature() == "add(a: int, b: int)"
        assert by_name["add"].description == "Add two integers."
        assert by_name["query_rows"].signature() == "query_rows(limit: int = 3)"
        assert by_name["get_user"].parameters["required"] == ["user_id"]
    assert tools  # the list stays, but the client is closed


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("add(a=2, b=40)", 42),
        ("add(1, 2)", 3),
        ("get_user(7)['name']", "user7"),
        ("query_rows(limit=2)", [{"n": 0, "square": 0}, {"n": 1, "square": 1}]),
        ("shout('hi')", "HI!"),
        ("list_()", ["a", "b"]),
        (
            "p = pixel(); (p['type'], p['mime_type'], p['data'][:4])",
            ("image", "image/png", b"\x89PNG"),
        ),
        ("sum(add(a=i, b=i) for i in range(20))", 380),
    ],
    ids=[
        "structured-int",
        "positional",
        "structured-dict",
        "json-text",
        "text",
        "builtin-name",
        "image",
        "twenty-calls",
    ],
)
def test_values_come_back_as_plain_python(
    demo_tools: list[Any],
    twin: Callable[..., TwinSession],
    code: str,
    expected: Any,
) -> None:
    session = twin(tools=demo_tools)
    assert session.execute(code).value == expected


def test_a_tool_error_is_a_catchable_tool_error(
    demo_tools: list[Any], twin: Callable[..., TwinSession]
) -> None:
    session = twin(tools=demo_tools)
    value = session.execute(
        "try:\n    fail('no such table')\nexcept ToolError as exc:\n    caught = str(exc)\ncaught"
    ).value
    assert value == "fail() failed: ToolError: Error executing tool fail: no such table"


def test_arguments_are_checked_on_the_host_before_the_call(
    demo_tools: list[Any],
    twin: Callable[..., TwinSession],
) -> None:
    session = twin(tools=demo_tools)
    catch = (
        "try:\n    {}\n"
        "except Exception as exc:\n    caught = (type(exc).__name__, str(exc))\n"
        "caught"
    )
    assert session.execute(catch.format("add(a='two', b=1)")).value == (
        "ToolError",
        "add(): argument 'a' must be int, got str 'two'",
    )
    assert session.execute(catch.format("add(a=1)")).value == (
        "TypeError",
        "add() missing 1 required positional argument: 'b'",
    )
    assert session.execute("add(a=2, b=1)").value == 3  # the control


def test_the_tools_run_on_the_host_not_in_the_sandbox(
    demo_stdio: mcp.StdioServerParameters, twin: Callable[..., TwinSession]
) -> None:
    with securepy_mcp.mcp_tools(demo_stdio) as tools:
        session = twin(tools=tools)
        child_pid, server_pid = session.execute(
            "import os\n(os.getpid(), get_user(1)['host_pid'])"
        ).value
        assert server_pid not in (child_pid, os.getpid())
        os.kill(server_pid, 0)  # a real process on this host: the MCP server


@pytest.mark.sandbox
def test_sandboxed_code_reaches_the_server_only_through_its_tools(
    demo_stdio: mcp.StdioServerParameters,
) -> None:
    with securepy_mcp.mcp_tools(demo_stdio) as tools, securepy.Session(tools=tools) as session:
        assert session.execute("add(a=20, b=22)").value == 42
        value = session.execute(
            "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), 1)\n"
            "except OSError as exc:\n    blocked = type(exc).__name__\nblocked"
        ).value
        assert value in ("OSError", "ConnectionRefusedError", "PermissionError")


def test_a_server_that_dies_mid_call_raises_tool_error_and_the_session_lives(
    demo_stdio: mcp.StdioServerParameters,
    twin: Callable[..., TwinSession],
) -> None:
    with securepy_mcp.mcp_tools(demo_stdio) as tools:
        session = twin(tools=tools)
        value = session.execute(
            "try:\n    die()\nexcept ToolError as exc:\n    caught = str(exc)\ncaught"
        ).value
        assert value.startswith("die() failed: ToolError: the MCP server failed: ")
        again = session.execute("try:\n    add(a=1, b=1)\nexcept ToolError:\n    r = 'gone'\nr")
        assert again.value == "gone"
        assert session.execute("6 * 7").value == 42


def test_an_http_server_that_dies_mid_call(
    start_demo_http: Callable[..., Any], twin: Callable[..., TwinSession]
) -> None:
    server = start_demo_http()
    with securepy_mcp.mcp_tools(server.url, timeout=20) as tools:
        session = twin(tools=tools)
        value = session.execute(
            "try:\n    die()\nexcept ToolError as exc:\n    caught = str(exc)\ncaught"
        ).value
        assert value.startswith("die() failed: ToolError: ")
        assert session.execute("6 * 7").value == 42


async def test_async_with_on_the_callers_loop_and_an_async_session(
    demo_stdio: mcp.StdioServerParameters,
) -> None:
    async with (
        securepy_mcp.mcp_tools(demo_stdio) as tools,
        securepy.AsyncSession(tools=tools, sandbox=False) as session,
    ):
        assert (await session.execute("add(a=1, b=2) + add(a=3, b=4)")).value == 10


async def test_async_with_and_a_sync_session_in_a_thread(
    demo_stdio: mcp.StdioServerParameters,
) -> None:
    # The tools are async, bound to this loop; a sync Session runs them on a loop of its own,
    # and each call hops back to this loop, which stays free while the thread waits.
    async with securepy_mcp.mcp_tools(demo_stdio) as tools:
        with securepy.Session(tools=tools, sandbox=False) as session:
            execution = await asyncio.to_thread(session.execute, "add(a=5, b=6)")
            assert execution.value == 11


async def test_from_an_open_client_or_client_session(demo_stdio: mcp.StdioServerParameters) -> None:
    async with mcp.Client(demo_stdio) as client:
        for source in (client, client.session):
            tools = await securepy_mcp.from_mcp_session(source)
            async with securepy.AsyncSession(tools=tools, sandbox=False) as session:
                assert (await session.execute("shout('ok')")).value == "OK!"


def test_a_server_that_cannot_start_is_a_clear_error() -> None:
    missing = {"command": sys.executable, "args": ["-c", "import sys; sys.exit(5)"]}
    with (
        pytest.raises(ConnectionError, match=r"^cannot use the MCP server '.*python.* -c "),
        securepy_mcp.mcp_tools(missing),
    ):
        pass


def test_an_mcp_tools_object_is_entered_once(demo_stdio: mcp.StdioServerParameters) -> None:
    bridge = securepy_mcp.mcp_tools(demo_stdio)
    with bridge:
        pass
    with pytest.raises(RuntimeError, match=r"^an McpTools object is entered once"), bridge:
        pass


async def test_a_server_that_dies_under_async_with_leaves_a_clean_exit(
    demo_stdio: mcp.StdioServerParameters,
) -> None:
    async with (
        securepy_mcp.mcp_tools(demo_stdio) as tools,
        securepy.AsyncSession(tools=tools, sandbox=False) as session,
    ):
        caught = await session.execute("try:\n    die()\nexcept ToolError as e:\n    r = str(e)\nr")
        assert (
            caught.value
            == "die() failed: ToolError: the MCP server failed: MCPError: Connection closed"
        )
        assert (await session.execute("6 * 7")).value == 42
