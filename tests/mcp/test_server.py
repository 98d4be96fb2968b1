"""The sandbox as an MCP server, driven by the SDK's own client over stdio and streamable HTTP."""

from __future__ import annotations

import contextlib
import os
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import mcp
import pytest

from .conftest import RunPython, Spawned, http_client, securepy_stdio

# stdio; HTTP with a protocol session (2025-11-25); HTTP without one (2026-07-28, handles).
CLIENTS = ["stdio", "http-session", "http-stateless"]

HOST_TOOLS = '''
import os

def host_pid() -> int:
    """The pid of the process this tool runs in."""
    return os.getpid()

TOOLS = [host_pid]
'''


@pytest.fixture
def tools_dir(tmp_path: Path) -> Path:
    (tmp_path / "hosttools.py").write_text(textwrap.dedent(HOST_TOOLS))
    return tmp_path


@pytest.fixture
def connect(
    request: pytest.FixtureRequest, tools_dir: Path, start_securepy_http: Callable[..., Spawned]
) -> Callable[..., Any]:
    """Connects SDK clients to one securepy-mcp server of the requested kind."""
    kind = request.param
    args = ["--no-sandbox", "--tools", "hosttools:TOOLS", "--timeout", "5"]
    server = None if kind == "stdio" else start_securepy_http(*args, cwd=tools_dir)

    @contextlib.asynccontextmanager
    async def client() -> AsyncIterator[mcp.Client]:
        if server is None:
            async with mcp.Client(securepy_stdio(*args, cwd=tools_dir)) as stdio:
                yield stdio
        else:
            mode = "legacy" if kind == "http-session" else "auto"
            async with http_client(server.url, mode=mode) as http:
                yield http

    return client


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie is gone for our purposes
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return False
    return True


async def _wait_gone(pid: int, timeout: float = 20) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still running"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("connect", CLIENTS, indirect=True)
async def test_run_python_is_listed_with_the_host_tools(connect: Callable[..., Any]) -> None:
    async with connect() as client:
        (tool,) = (await client.list_tools()).tools
        assert tool.name == "run_python"
        assert tool.input_schema["required"] == ["code"]
        assert 'def host_pid() -> int:\n    """The pid of the process this tool runs in."""' in (
            tool.description or "")


@pytest.mark.parametrize("connect", CLIENTS, indirect=True)
async def test_state_persists_for_a_client_and_is_isolated_between_clients(
    connect: Callable[..., Any],
) -> None:
    async with connect() as first_client, connect() as second_client:
        first, second = RunPython(first_client), RunPython(second_client)
        assert await first("secret = 41") == (False, "(no output)")
        assert await first("secret + 1") == (False, "42")
        is_error, text = await second("secret")
        assert is_error
        assert text.endswith("NameError: name 'secret' is not defined")
        assert await second("secret = 'mine'") == (False, "(no output)")
        assert await first("secret") == (False, "41")


@pytest.mark.parametrize("connect", CLIENTS, indirect=True)
async def test_a_host_tool_runs_on_the_host(connect: Callable[..., Any]) -> None:
    async with connect() as client:
        run = RunPython(client)
        is_error, text = await run("import os\n(os.getpid(), host_pid())")
        assert not is_error
        sandbox_pid, tool_pid = (int(part) for part in text.strip("()").split(","))
        assert sandbox_pid != tool_pid
        assert b"securepy-mcp" in Path(f"/proc/{tool_pid}/cmdline").read_bytes()


@pytest.mark.parametrize("connect", CLIENTS, indirect=True)
async def test_errors_are_is_error_results_with_the_users_traceback(
    connect: Callable[..., Any],
) -> None:
    async with connect() as client:
        run = RunPython(client)
        is_error, text = await run("print('before')\n1 / 0")
        assert is_error
        assert text.startswith("before\nTraceback (most recent call last):\n")
        assert text.endswith("ZeroDivisionError: division by zero")
        assert "securepy" not in text  # no host or worker frames
        is_error, text = await run("while True:\n    pass")
        assert is_error and "timed out" in text
        assert await run("'still usable'") == (False, "'still usable'")


@pytest.mark.parametrize("connect", ["stdio", "http-session"], indirect=True)
async def test_output_is_streamed_as_progress_while_the_code_runs(
    connect: Callable[..., Any],
) -> None:
    seen: list[tuple[float, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, message))

    async with connect() as client:
        result = await client.call_tool(
            "run_python",
            {"code": "for i in range(3):\n    print('step', i, flush=True)"},
            progress_callback=progress,
        )
        assert not result.is_error
        assert "".join(message or "" for _, message in seen) == "step 0\nstep 1\nstep 2\n"
        assert [value for value, _ in seen] == sorted(value for value, _ in seen)


@pytest.mark.parametrize("connect", ["stdio"], indirect=True)
async def test_a_stdio_clients_sandbox_closes_with_the_client(connect: Callable[..., Any]) -> None:
    async with connect() as client:
        _, text = await RunPython(client)("import os; os.getpid()")
        sandbox_pid = int(text)
        assert _alive(sandbox_pid)
    await _wait_gone(sandbox_pid)


async def test_an_http_clients_sandbox_closes_when_it_ends_its_session(
    tools_dir: Path,
    start_securepy_http: Callable[..., Spawned],
) -> None:
    server = start_securepy_http("--no-sandbox", cwd=tools_dir)
    async with http_client(server.url, mode="legacy") as staying:
        stays = int((await RunPython(staying)("import os; os.getpid()"))[1])
        async with http_client(server.url, mode="legacy") as leaving:
            leaves = int((await RunPython(leaving)("import os; os.getpid()"))[1])
        await _wait_gone(leaves)  # the client sent DELETE: its sandbox is closed now
        assert _alive(stays)
        assert await RunPython(staying)("'here'") == (False, "'here'")


async def test_a_stateless_clients_sandbox_closes_after_the_idle_timeout(
    tools_dir: Path,
    start_securepy_http: Callable[..., Spawned],
) -> None:
    server = start_securepy_http("--no-sandbox", "--idle-timeout", "1", cwd=tools_dir)
    async with http_client(server.url) as client:
        run = RunPython(client)
        sandbox_pid = int((await run("import os; os.getpid()"))[1])
        assert run.session_id is not None
        await _wait_gone(sandbox_pid)
        is_error, text = await run("1")
        assert is_error
        assert text.startswith(
            f"unknown or expired session_id {run.session_id!r}: call run_python without session_id"
        )


@pytest.mark.sandbox
async def test_sandboxed_sessions_over_stdio(tools_dir: Path) -> None:
    params = securepy_stdio("--tools", "hosttools:TOOLS", cwd=tools_dir)
    async with mcp.Client(params) as client:
        run = RunPython(client)
        is_error, text = await run("import os\n(os.getpid(), host_pid())")
        assert not is_error
        sandbox_pid, server_pid = (int(part) for part in text.strip("()").split(","))
        assert sandbox_pid != server_pid  # the code sees its own pid namespace
        children = _descendants(server_pid)
        assert children  # the sandbox, a child of the server
        assert await run("x = 1") == (False, "(no output)")
    for pid in children:
        await _wait_gone(pid)
    await _wait_gone(server_pid)


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = {int(p) for p in (task / "children").read_text().split()}
                todo.extend(kids - found)
                found |= kids
    return found


async def test_the_idle_timeout_spares_a_stdio_client_which_is_still_there(
    tools_dir: Path,
) -> None:
    import asyncio

    params = securepy_stdio("--no-sandbox", "--idle-timeout", "0.2", cwd=tools_dir)
    async with mcp.Client(params) as client:
        run = RunPython(client)
        assert await run("kept = 'yes'") == (False, "(no output)")
        await asyncio.sleep(1.0)  # five idle timeouts: an HTTP client's sandbox would be gone
        assert await run("kept") == (False, "'yes'")
