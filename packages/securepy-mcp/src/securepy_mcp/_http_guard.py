"""What uvicorn lacks against slow clients, for the HTTP server: a deadline for a connection's
first request and a cap on open connections.

uvicorn times out idle keep-alive connections, but not one that never finishes its first
request's headers; the token and Host checks run only on a whole request. So anyone who can
reach the port could open connections that send a byte now and then until the server ran out
of descriptors (about 20,000 of them ended the process). Here a connection that has not sent
a whole request within ``FIRST_REQUEST_TIMEOUT`` is closed, and past ``max_connections()``
open connections a new one is closed at once, so the server keeps its descriptors and its
other clients.
"""

from __future__ import annotations

import asyncio
import resource

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["FIRST_REQUEST_TIMEOUT", "GuardedH11Protocol", "max_connections"]

FIRST_REQUEST_TIMEOUT = 10.0  # seconds from connect to a whole first request
_MAX_CONNECTIONS = 1024


def max_connections() -> int:
    """Open connections allowed at once: 1,024, or half the descriptors this process may open
    where that is fewer (the rest serve the sandboxes and the server itself)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return _MAX_CONNECTIONS
    return max(16, min(_MAX_CONNECTIONS, soft // 2))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with the first-request deadline and the connection cap."""

    _requested = False
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > max_connections():
            transport.close()
            return
        self._deadline = self.loop.call_later(FIRST_REQUEST_TIMEOUT, self._drop_if_silent)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self._requested:
            self._requested = True
            self._cancel_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _drop_if_silent(self) -> None:
        self._deadline = None
        if not self._requested and not self.transport.is_closing():
            self.transport.close()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
