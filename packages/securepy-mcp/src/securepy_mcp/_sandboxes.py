"""One persistent sandbox session per MCP client, checked out of a pool, closed when it leaves.

Which client a ``run_python`` call belongs to depends on the transport:

- stdio: the server process serves one client, so it has one sandbox, closed when the client
  closes the pipe (the server then stops);
- streamable HTTP with a protocol session (the ``Mcp-Session-Id`` header, protocol versions up
  to 2025-11-25): one sandbox per session, closed when the client ends the session (HTTP
  ``DELETE``) or after ``idle_timeout`` without a call;
- streamable HTTP without one (the stateless 2026-07-28 protocol): the spec moves state into a
  handle the server mints and the client passes back as a tool argument, so the first call
  starts a sandbox and returns its ``session_id``; it is closed after ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator

import securepy

__all__ = ["STDIO_KEY", "Sandboxes"]

STDIO_KEY = "stdio"

logger = logging.getLogger("securepy.mcp")


MAX_ISSUED_SESSIONS = 100_000  # protocol session ids remembered at once


@dataclasses.dataclass(eq=False)
class _Entry:
    session: securepy.AsyncSession
    checkout: contextlib.AbstractAsyncContextManager[securepy.AsyncSession]
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    last_used: float = dataclasses.field(default_factory=time.monotonic)
    busy: int = 0


class Sandboxes:
    """The live sandboxes of one server, by client key, from one ``AsyncSessionPool``."""

    def __init__(self, pool: securepy.AsyncSessionPool, *, idle_timeout: float | None) -> None:
        self._pool = pool
        self._idle_timeout = idle_timeout
        self._issued: dict[str, None] = {}  # protocol session ids issued, oldest first
        self._entries: dict[str, asyncio.Task[_Entry]] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def new_handle() -> str:
        """An unguessable ``session_id`` for a client of the stateless protocol."""
        return secrets.token_urlsafe(18)

    def note_protocol_session(self, session_id: str) -> None:
        """Remember a protocol session id the server issued (an ``initialize`` response's
        ``Mcp-Session-Id``): only those key a sandbox, so a client cannot pick its own key (and
        two clients that send the same made-up id do not share a sandbox)."""
        issued = self._issued
        issued[session_id] = None
        if len(issued) > MAX_ISSUED_SESSIONS:
            del issued[next(iter(issued))]  # the oldest: long expired by the SDK's idle timeout

    def issued(self, session_id: str) -> bool:
        """Whether the server issued ``session_id`` (and it was not ended by DELETE)."""
        return session_id in self._issued

    def forget_protocol_session(self, session_id: str) -> None:
        self._issued.pop(session_id, None)

    def knows(self, key: str) -> bool:
        """Whether a sandbox is open (or starting) under ``key``."""
        return key in self._entries

    @contextlib.asynccontextmanager
    async def use(self, key: str) -> AsyncIterator[securepy.AsyncSession]:
        """The sandbox of ``key`` (started on first use), held for one run at a time.

        Raises:
            securepy.errors.SessionClosedError: the server is closing, or no sandbox became
                free in time (as many clients as ``max_sessions`` are connected).
            securepy.errors.SandboxUnavailableError: no sandbox can start on this host.
        """
        if self._closed:
            raise securepy.SessionClosedError("the securepy MCP server is shutting down")
        task = self._entries.get(key)
        if task is None:
            task = asyncio.ensure_future(self._check_out())
            self._entries[key] = task
        try:
            entry = await asyncio.shield(task)
        except BaseException:
            if task.done() and self._entries.get(key) is task:
                del self._entries[key]  # a failed start is retried by the next call
            raise
        entry.busy += 1
        try:
            async with entry.lock:
                yield entry.session
        finally:
            entry.busy -= 1
            entry.last_used = time.monotonic()

    async def close(self, key: str) -> None:
        """Close the sandbox of ``key``, if there is one (its client has gone)."""
        task = self._entries.pop(key, None)
        if task is not None:
            await _release(task)
            logger.info("closed the sandbox of client %s", key[:24])  # never a whole handle

    async def close_idle(self) -> None:
        """Close every HTTP client's sandbox unused for ``idle_timeout`` seconds."""
        if self._idle_timeout is None:
            return
        cutoff = time.monotonic() - self._idle_timeout
        for key, task in tuple(self._entries.items()):
            if key == STDIO_KEY:
                continue  # its client is still there: it ends the process when it leaves
            if task.done() and not task.cancelled() and task.exception() is None:
                entry = task.result()
                if entry.busy == 0 and entry.last_used < cutoff:
                    await self.close(key)

    async def reap_forever(self) -> None:
        """Run :meth:`close_idle` periodically until cancelled."""
        if self._idle_timeout is None:
            return
        period = max(0.05, min(self._idle_timeout / 4, 30.0))
        while True:
            await asyncio.sleep(period)
            await self.close_idle()

    def shut(self) -> None:
        """Refuse further calls and forget every sandbox (the pool's close then stops them all).

        Returning each checkout instead would start a replacement for each, only to stop it.
        """
        self._closed = True
        for task in self._entries.values():
            task.cancel()
        self._entries.clear()

    async def _check_out(self) -> _Entry:
        checkout = self._pool.session()
        session = await checkout.__aenter__()
        return _Entry(session, checkout)


async def _release(task: asyncio.Task[_Entry]) -> None:
    if not task.done():
        task.cancel()  # still waiting for a free sandbox: stop waiting
    try:
        entry = await task
    except BaseException:  # it never started: nothing to give back
        return
    await entry.checkout.__aexit__(None, None, None)
