"""The securepy-mcp command: usage errors, and bridging a config's servers into the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mcp
import pytest

from .conftest import DEMO_SERVER, SECUREPY_MCP, RunPython, securepy_stdio


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--tools", "nocolon"],
            "securepy-mcp: error: --tools takes MODULE:ATTR (e.g. mytools:TOOLS), got 'nocolon'\n",
        ),
        (
            ["--tools", "no_such_module_xyz:TOOLS"],
            "securepy-mcp: error: No module named 'no_such_module_xyz'\n",
        ),
        (
            ["--http", "127.0.0.1:http"],
            "securepy-mcp: error: --http takes HOST:PORT (e.g. "
            "127.0.0.1:8765), got '127.0.0.1:http'\n",
        ),
        (
            ["--memory", "lots"],
            "securepy-mcp: error: --memory takes a size like 512M or 2G, got 'lots'\n",
        ),
        (
            ["--mcp-config", "/nonexistent/servers.json"],
            "securepy-mcp: error: [Errno 2] No such "
            "file or directory: "
            "'/nonexistent/servers.json'\n",
        ),
    ],
    ids=["tools-shape", "tools-module", "http", "memory", "config-missing"],
)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [SECUREPY_MCP, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert (proc.returncode, proc.stderr) == (2, message)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"servers": {}}, 'expected {"mcpServers": {"name": {"command": ...} or {"url": ...}}}'),
        (
            {"mcpServers": {"x": {"args": []}}},
            "an mcpServers entry needs 'command' (a stdio "
            "server) or 'url' (a streamable HTTP server); got "
            "keys ['args']",
        ),
        (
            {"mcpServers": {"x": {"url": "ftp://h"}}},
            "an MCP server URL starts with http:// or https://, got 'ftp://h'",
        ),
        (
            {"mcpServers": {"x": {"type": "sse", "url": "http://h"}}},
            "the legacy SSE transport is not supported; use the server's streamable HTTP endpoint "
            "('type': 'http')",
        ),
        (
            {"mcpServers": {"x": {"command": "c", "cwd_": "/"}}},
            "unknown keys ['cwd_'] in a stdio MCP server entry; it takes "
            "['args', 'command', 'cwd', 'env', 'type']",
        ),
    ],
    ids=["no-mcpServers", "no-command", "bad-url", "sse", "unknown-key"],
)
def test_a_bad_mcp_config_is_refused_at_start(tmp_path: Path, config: object, message: str) -> None:
    path = tmp_path / "servers.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [SECUREPY_MCP, "--mcp-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stderr.endswith(message + "\n"), proc.stderr


async def test_mcp_config_servers_tools_are_callable_from_run_python(tmp_path: Path) -> None:
    config = tmp_path / "servers.json"
    config.write_text(
        json.dumps(
            {"mcpServers": {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}}
        )
    )
    params = securepy_stdio("--no-sandbox", "--mcp-config", str(config))
    async with mcp.Client(params) as client:
        (tool,) = (await client.list_tools()).tools
        assert 'def add(a: int, b: int):\n    """Add two integers."""' in (
            tool.description or "")
        run = RunPython(client)
        code = "rows = query_rows(limit=20)\nsum(add(a=r['n'], b=r['square']) for r in rows)"
        assert await run(code) == (False, str(sum(n + n * n for n in range(20))))


def test_help_lists_the_options() -> None:
    proc = subprocess.run([SECUREPY_MCP, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for option in (
        "--http",
        "--token",
        "--tools",
        "--mcp-config",
        "--timeout",
        "--memory",
        "--no-sandbox",
        "--max-sessions",
        "--idle-timeout",
    ):
        assert option in proc.stdout


def test_stdio_params_helper_uses_the_console_script() -> None:
    assert securepy_stdio().command == SECUREPY_MCP
    assert Path(SECUREPY_MCP).exists()
