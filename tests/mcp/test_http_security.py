"""Streamable HTTP is remote code execution by design: the token and the Host check hold."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx2
import mcp
import pytest

from .conftest import RunPython, Spawned, http_client

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def _post(url: str, **headers: str) -> httpx2.Response:
    return httpx2.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **headers}, timeout=30)


@pytest.fixture
def guarded(start_securepy_http: Callable[..., Spawned]) -> Spawned:
    return start_securepy_http("--no-sandbox", "--token", "s3cret-token")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Bearer s3cret-token2", "s3cret-token", "Basic s3cret-token"],
    ids=["missing", "wrong", "longer", "no-scheme", "other-scheme"],
)
def test_a_request_without_the_token_is_refused(
    guarded: Spawned, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = _post(guarded.url, **headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    control = _post(guarded.url, Authorization="Bearer s3cret-token")
    assert control.status_code == 200


async def test_the_sdk_client_works_with_the_token_and_fails_without(guarded: Spawned) -> None:
    async with http_client(guarded.url, token="s3cret-token") as client:
        assert await RunPython(client)("6 * 7") == (False, "42")
    # The SDK reports the 401 (tested above at the HTTP level) as a generic error response.
    with pytest.raises(ExceptionGroup, match="unhandled errors") as refused:
        async with http_client(guarded.url, token="wrong"):
            pass
    assert "Server returned an error response" in repr(refused.value)


def test_the_token_can_come_from_the_environment(
    start_securepy_http: Callable[..., Spawned],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECUREPY_MCP_TOKEN", "from-env")
    server = start_securepy_http("--no-sandbox")
    assert _post(server.url).status_code == 401
    assert _post(server.url, Authorization="Bearer from-env").status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.nip.io:{port}"])
def test_dns_rebinding_a_foreign_host_header_is_refused(
    start_securepy_http: Callable[..., Spawned],
    host: str,
) -> None:
    server = start_securepy_http("--no-sandbox")
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    response = _post(server.url, Host=host.format(port=port))
    assert response.status_code == 421
    assert _post(server.url, Host=f"localhost:{port}").status_code == 200  # the control


def test_a_foreign_origin_is_refused(start_securepy_http: Callable[..., Spawned]) -> None:
    server = start_securepy_http("--no-sandbox")
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    assert _post(server.url, Origin="http://evil.example").status_code == 403
    assert _post(server.url, Origin=f"http://127.0.0.1:{port}").status_code == 200


def test_it_binds_loopback_unless_told(start_securepy_http: Callable[..., Spawned]) -> None:
    server = start_securepy_http("--no-sandbox")
    assert server.url.startswith("http://127.0.0.1:")


def test_connections_that_never_finish_a_request_are_closed(guarded: Spawned) -> None:
    """uvicorn times out idle keep-alive connections, not a first request that never ends:
    ~20,000 such connections used to exhaust the server's descriptors and end the process."""
    from urllib.parse import urlsplit

    from securepy_mcp._http_guard import FIRST_REQUEST_TIMEOUT

    address = urlsplit(guarded.url)
    slow = []
    for _ in range(200):
        sock = socket.create_connection((address.hostname, address.port), timeout=30)
        sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
        slow.append(sock)
    try:
        # control: meanwhile a whole request is answered (401: no token)
        assert _post(guarded.url).status_code == 401
        started = time.monotonic()
        for sock in slow:
            assert sock.recv(1) == b""  # closed by the server, not by us
        assert time.monotonic() - started < FIRST_REQUEST_TIMEOUT + 10
        assert guarded.proc.poll() is None
        assert _post(guarded.url, Authorization="Bearer s3cret-token").status_code == 200
    finally:
        for sock in slow:
            sock.close()


async def test_a_made_up_protocol_session_id_keys_no_sandbox(
    start_securepy_http: Callable[..., Spawned],
) -> None:
    """On the stateless protocol path the SDK checks no Mcp-Session-Id: clients that send the
    same made-up one must not share a sandbox (nor pick their key)."""
    server = start_securepy_http("--no-sandbox")
    made_up = {"Mcp-Session-Id": "everyone"}
    async with http_client(server.url, mode="2026-07-28", headers=made_up) as first:
        own = RunPython(first)
        await own("secret = 'FIRST'")
        assert await own("secret") == (False, "'FIRST'")  # control: its own sandbox
        async with http_client(server.url, mode="2026-07-28", headers=made_up) as second:
            failed, text = await RunPython(second)("secret")
            assert failed and "NameError" in text


async def test_a_refused_delete_leaves_the_sandbox(
    start_securepy_http: Callable[..., Spawned],
) -> None:
    server = start_securepy_http("--no-sandbox")
    issued: dict[str, str] = {}

    async def remember(response: httpx2.Response) -> None:
        issued.setdefault("id", response.headers.get("mcp-session-id", ""))

    async with httpx2.AsyncClient(event_hooks={"response": [remember]}, timeout=60) as http:
        from mcp.client.streamable_http import streamable_http_client

        async with mcp.Client(streamable_http_client(server.url, http_client=http),
                              mode="legacy") as victim:
            state = RunPython(victim)
            await state("kept = 42")
            refused = httpx2.delete(server.url, timeout=30, headers={
                "Mcp-Session-Id": issued["id"], "Host": "evil.example"})
            assert refused.status_code == 421
            assert await state("kept") == (False, "42")  # the refused DELETE closed nothing
