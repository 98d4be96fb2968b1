"""Running the server: stdio, or streamable HTTP behind a Host check and a bearer token.

Streamable HTTP is remote code execution by design, so it binds 127.0.0.1 unless told
otherwise, checks the ``Host`` and ``Origin`` headers on every request (DNS-rebinding
protection, always on) and, given a token, refuses any request without
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import anyio
import securepy
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._http_guard import GuardedH11Protocol
from ._server import SecurePyServer, server
from ._servers import ServerSpec

__all__ = ["TOKEN_ENV", "http_app", "serve"]

TOKEN_ENV = "SECUREPY_MCP_TOKEN"
logger = logging.getLogger("securepy.mcp")


def serve(
    tools: Iterable[securepy.Tool | Callable[..., Any]] = (),
    *,
    mcp_servers: Mapping[str, ServerSpec] | None = None,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    **server_options: Any,
) -> None:
    """Build :func:`securepy_mcp.server` and serve it until the client (stdio) or Ctrl-C ends it.

    Args:
        tools: host functions callable from the code.
        mcp_servers: other MCP servers whose tools the code may call (see ``server``).
        transport: ``"stdio"`` (one client, on this process's stdin/stdout) or ``"http"``
            (streamable HTTP at ``http://host:port/mcp``).
        host: the address to bind for HTTP; 127.0.0.1 unless you mean to expose it.
        port: the TCP port for HTTP; 0 picks a free one (printed on stderr).
        token: for HTTP, the bearer token every request must carry; None for none.
        allowed_hosts: extra ``Host`` header values to accept for HTTP (``"name:port"``),
            e.g. behind a reverse proxy; the bound address and localhost are always accepted.
        **server_options: the other arguments of :func:`securepy_mcp.server`.

    Raises:
        ValueError: an unknown transport, or a bad server option.
    """
    if transport == "stdio":
        # One client per stdio process: one sandbox pre-started, not a pool of them.
        server_options.setdefault("max_sessions", 1)
    app = server(tools, mcp_servers=mcp_servers, **server_options)
    if transport == "stdio":
        app.run("stdio")
    elif transport == "http":
        idle = server_options.get("idle_timeout", 30 * 60)
        anyio.run(_serve_http, app, host, port, token, list(allowed_hosts), idle)
    else:
        raise ValueError(f"transport must be 'stdio' or 'http', got {transport!r}")


def http_app(
    app: SecurePyServer,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    idle_timeout: float | None = 30 * 60,
) -> ASGIApp:
    """The ASGI app serving ``app`` over streamable HTTP at ``/mcp``, guarded.

    Args:
        app: a server from :func:`securepy_mcp.server`.
        host: the address it is bound to (accepted in ``Host`` headers).
        port: the port it is bound to.
        token: the bearer token every request must carry; None for none.
        allowed_hosts: extra ``Host`` values to accept.
        idle_timeout: seconds before an idle protocol session ends.
    """
    hosts = [
        f"{host}:{port}",
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"[::1]:{port}",
        *allowed_hosts,
    ]
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts],
    )
    starlette_app = app.streamable_http_app(
        transport_security=security, host=host, session_idle_timeout=idle_timeout
    )
    return _Guard(starlette_app, app, token)


class _Guard:
    """Checks the bearer token on every request; closes a sandbox when its session ends."""

    def __init__(self, app: ASGIApp, server: SecurePyServer, token: str | None) -> None:
        self._app = app
        self._server = server
        self._expected = None if token is None else f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self._expected is not None and not hmac.compare_digest(
            headers.get("authorization", "").encode(), self._expected
        ):
            refusal = PlainTextResponse(
                "Unauthorized: send 'Authorization: Bearer <token>'",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await refusal(scope, receive, send)
            return
        sandboxes = self._server.sandboxes
        answer: dict[str, Any] = {}

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                issued = Headers(raw=message.get("headers") or []).get("mcp-session-id")
                if issued and sandboxes is not None:
                    sandboxes.note_protocol_session(issued)
            await send(message)

        await self._app(scope, receive, observed)
        session_id = headers.get("mcp-session-id")
        # Only a DELETE the SDK carried out ends the sandbox (one it refused, for a foreign
        # Host say, must not).
        if (scope["method"] == "DELETE" and session_id and sandboxes is not None
                and 200 <= answer.get("status", 500) < 300):
            sandboxes.forget_protocol_session(session_id)
            await sandboxes.close("http:" + session_id)


async def _serve_http(
    app: SecurePyServer,
    host: str,
    port: int,
    token: str | None,
    allowed_hosts: list[str],
    idle_timeout: float | None,
) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    bound_port = sock.getsockname()[1]
    if token is None and not _is_loopback(host):
        logger.warning(
            "serving run_python on %s without a token: anyone who can reach it can "
            "run code in the sandbox (pass --token or set %s)",
            host,
            TOKEN_ENV,
        )
    asgi = http_app(
        app,
        host=host,
        port=bound_port,
        token=token,
        allowed_hosts=allowed_hosts,
        idle_timeout=idle_timeout,
    )
    config = uvicorn.Config(asgi, log_level="warning", lifespan="on", http=GuardedH11Protocol)
    print(
        f"securepy-mcp: serving http://{_url_host(host)}:{bound_port}/mcp",
        file=sys.stderr,
        flush=True,
    )
    with sock:
        await uvicorn.Server(config).serve(sockets=[sock])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
