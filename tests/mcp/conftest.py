"""Real MCP servers for the securepy-mcp tests: subprocesses over stdio and on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client

DEMO_SERVER = Path(__file__).with_name("demo_server.py")
SECUREPY_MCP = str(Path(sys.executable).with_name("securepy-mcp"))


class Spawned:
    """A server subprocess that announced ``serving http://...`` on stderr."""

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        self.stderr: list[str] = []
        announced = threading.Event()
        self.url = ""

        def drain() -> None:  # a full stderr pipe would stall the server
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)
                found = re.search(r"serving (http://\S+)", line)
                if found and not self.url:
                    self.url = found.group(1)
                    announced.set()
            announced.set()

        self._drainer = threading.Thread(target=drain, daemon=True)
        self._drainer.start()
        if not announced.wait(60) or not self.url:
            self.close()
            raise AssertionError("server did not start:\n" + "".join(self.stderr)[-3000:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drainer.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def demo_stdio() -> mcp.StdioServerParameters:
    """The demo MCP server, started over stdio by whoever connects."""
    return mcp.StdioServerParameters(command=sys.executable, args=[str(DEMO_SERVER)])


@pytest.fixture(scope="module")
def demo_http_url() -> Iterator[str]:
    """The demo MCP server over streamable HTTP on 127.0.0.1 (one per test module)."""
    server = Spawned([sys.executable, str(DEMO_SERVER), "--http", "0"])
    yield server.url
    server.close()


@pytest.fixture
def start_demo_http() -> Iterator[Callable[[], Spawned]]:
    """A demo HTTP server of the test's own (for tests that kill it)."""
    started: list[Spawned] = []

    def start() -> Spawned:
        started.append(Spawned([sys.executable, str(DEMO_SERVER), "--http", "0"]))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def start_securepy_http() -> Iterator[Callable[..., Spawned]]:
    """``securepy-mcp --http 127.0.0.1:0 ARGS...``, stopped after the test."""
    started: list[Spawned] = []

    def start(*args: str, cwd: Path | None = None) -> Spawned:
        started.append(Spawned([SECUREPY_MCP, "--http", "127.0.0.1:0", *args], cwd=cwd))
        return started[-1]

    yield start
    for server in started:
        server.close()


@contextlib.asynccontextmanager
async def http_client(
    url: str, *, token: str | None = None, mode: str = "auto",
    headers: dict[str, str] | None = None,
) -> AsyncIterator[mcp.Client]:
    """The SDK's client over streamable HTTP, with a bearer token when given (and any other
    ``headers`` on every request)."""
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    async with (
        # As the SDK's own client: httpx2's 5 s default read timeout would cut long runs short.
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
        mcp.Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def securepy_stdio(*args: str, cwd: Path | None = None) -> mcp.StdioServerParameters:
    """``securepy-mcp ARGS...`` over stdio, as a desktop client's config starts it."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root")}
    return mcp.StdioServerParameters(
        command=SECUREPY_MCP, args=list(args), env=env, cwd=str(cwd) if cwd else None
    )


class RunPython:
    """Calls ``run_python`` like a model would, passing back a minted session_id."""

    def __init__(self, client: mcp.Client) -> None:
        self.client = client
        self.session_id: str | None = None

    async def __call__(self, code: str, **extra: Any) -> tuple[bool, str]:
        arguments: dict[str, Any] = {"code": code, **extra}
        if self.session_id is not None:
            arguments.setdefault("session_id", self.session_id)
        result = await self.client.call_tool("run_python", arguments)
        minted = (result.meta or {}).get("securepy/session_id")
        if minted:
            self.session_id = minted
        texts = [block.text for block in result.content if block.type == "text"]
        return result.is_error, texts[0] if texts else ""
