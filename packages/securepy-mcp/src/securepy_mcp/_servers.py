"""Where an MCP server is: stdio parameters, a URL, or an entry of an ``mcpServers`` config."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import mcp
from mcp.client.streamable_http import streamable_http_client

__all__ = ["ServerSpec", "describe_server", "load_config", "open_client"]

ServerSpec = mcp.StdioServerParameters | str | Mapping[str, Any]

_STDIO_KEYS = {"type", "command", "args", "env", "cwd"}
_HTTP_KEYS = {"type", "url", "headers"}


def open_client(server: ServerSpec) -> mcp.Client:
    """An unentered ``mcp.Client`` for ``server``.

    Raises:
        TypeError: ``server`` is none of the accepted kinds.
        ValueError: a config entry is malformed; the message names the key and the fix.
    """
    if isinstance(server, mcp.StdioServerParameters):
        return mcp.Client(server)
    if isinstance(server, str):
        return mcp.Client(_check_url(server))
    if isinstance(server, Mapping):
        return _client_from_entry(server)
    raise TypeError(
        "an MCP server is mcp.StdioServerParameters, an http(s):// URL or an "
        f"mcpServers config entry (a dict), not {type(server).__name__}"
    )


def describe_server(server: ServerSpec) -> str:
    """A short name for messages: the command or the URL (never headers or env values)."""
    if isinstance(server, mcp.StdioServerParameters):
        return repr(" ".join([server.command, *server.args])[:200])
    if isinstance(server, str):
        return repr(server)
    if isinstance(server, Mapping):
        if "url" in server:
            return repr(str(server["url"]))
        return repr(
            " ".join(str(part) for part in [server.get("command", "?"), *server.get("args", [])])[
                :200
            ]
        )
    return repr(server)


def load_config(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The ``mcpServers`` of a config file, as assistants write it: name -> entry.

    Raises:
        ValueError: the file is not JSON, or has no ``mcpServers`` object.
        OSError: the file cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: not JSON ({exc})") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict) or not all(isinstance(v, dict) for v in servers.values()):
        raise ValueError(
            f"{os.fspath(path)}: expected "
            '{"mcpServers": {"name": {"command": ...} or {"url": ...}}}'
        )
    for name, entry in servers.items():
        try:
            open_client(entry)  # a malformed entry fails at start, not at the first call
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)}: mcpServers[{name!r}]: {exc}") from None
    return servers


def _client_from_entry(entry: Mapping[str, Any]) -> mcp.Client:
    kind = entry.get("type")
    if kind == "sse":
        raise ValueError(
            "the legacy SSE transport is not supported; use the server's "
            "streamable HTTP endpoint ('type': 'http')"
        )
    if "url" in entry:
        unknown = set(entry) - _HTTP_KEYS
        if unknown:
            raise ValueError(
                f"unknown keys {sorted(unknown)} in an HTTP MCP server entry; "
                f"it takes {sorted(_HTTP_KEYS)}"
            )
        headers = entry.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("'headers' must map header names to string values")
        url = _check_url(entry["url"])
        if not headers:
            return mcp.Client(url)
        return mcp.Client(_http_with_headers(url, dict(headers)))
    if "command" in entry:
        unknown = set(entry) - _STDIO_KEYS
        if unknown:
            raise ValueError(
                f"unknown keys {sorted(unknown)} in a stdio MCP server entry; "
                f"it takes {sorted(_STDIO_KEYS)}"
            )
        command, args, env = entry["command"], entry.get("args", []), entry.get("env")
        if not isinstance(command, str) or not command:
            raise ValueError("'command' must be a non-empty string")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError("'args' must be a list of strings")
        if env is not None and not (
            isinstance(env, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ValueError("'env' must map variable names to string values")
        return mcp.Client(
            mcp.StdioServerParameters(
                command=command,
                args=args,
                env=dict(env) if env is not None else None,
                cwd=entry.get("cwd"),
            )
        )
    raise ValueError(
        "an mcpServers entry needs 'command' (a stdio server) or 'url' (a "
        f"streamable HTTP server); got keys {sorted(entry)}"
    )


@contextlib.asynccontextmanager
async def _http_with_headers(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    # The SDK leaves a client it is given open: this one is made, and closed, per connection.
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0)) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


def _check_url(url: Any) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"an MCP server URL starts with http:// or https://, got {url!r}")
    return url
