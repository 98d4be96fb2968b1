"""The host end of the socket: frames out, validated messages in, caps and deadlines.

This is the one place where socket errors, EOF, oversized frames and bad JSON from the child
become :class:`securepy.errors.ProtocolError`. Everything above sees only valid messages.
"""

from __future__ import annotations

import asyncio
import math
import select
import socket
import time
from typing import Any, Protocol

from ._frame_cost import check_frame_cost
from ._worker import protocol
from .errors import ProtocolError

__all__ = ["OFF_LOOP_BYTES", "AsyncChannel", "Channel", "DeadlineExceeded", "open_socketpair"]

# Frames larger than this are parsed and decoded off the event loop: a few milliseconds' work.
OFF_LOOP_BYTES = 256 * 1024


class DeadlineExceeded(Exception):
    """The deadline passed before a whole message arrived (the buffer keeps what did)."""


def open_socketpair() -> tuple[socket.socket, socket.socket]:
    """A connected pair: the host's end, and the child's (inheritable) end."""
    host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child.set_inheritable(True)
    return host, child


class _Poll(Protocol):
    def poll(self, timeout: float | None = None, /) -> list[tuple[int, int]]: ...


def _readiness(sock: socket.socket, *, writing: bool) -> _Poll:
    """A poller of ``sock`` for reading or for writing."""
    if not hasattr(select, "poll"):
        return _SelectPoll(sock, writing=writing)
    poll = select.poll()
    poll.register(sock, select.POLLOUT if writing else select.POLLIN)
    return poll


class _SelectPoll:
    """select.poll's one use here, through select.select (Windows has no poll; its select
    waits on sockets)."""

    def __init__(self, sock: socket.socket, *, writing: bool) -> None:
        self._sockets = ([], [sock]) if writing else ([sock], [])

    def poll(self, timeout: float | None = None, /) -> list[tuple[int, int]]:
        seconds = None if timeout is None else timeout / 1000
        readable, writable, _ = select.select(*self._sockets, [], seconds)
        return [(0, 1)] if readable or writable else []


def _reader(max_frame_bytes: int) -> protocol.FrameReader:
    return protocol.FrameReader(protocol.CHILD_MESSAGES, max_frame_bytes, check_frame_cost)


def _protocol_error(exc: protocol.FrameError) -> ProtocolError:
    """The one mapping of a framing failure to the host's error."""
    if isinstance(exc, protocol.FrameTooLarge):
        return ProtocolError(f"the child sent {exc}")
    return ProtocolError(f"the child sent an invalid frame: {exc}")


class Channel:
    """Blocking host end of the socket."""

    def __init__(self, sock: socket.socket, *, max_frame_bytes: int) -> None:
        self._sock = sock
        self._buffer = _reader(max_frame_bytes)
        # Non-blocking plus our own poll: a socket timeout would cost two fcntl calls per
        # receive, because the deadline (and so the timeout) changes every time.
        sock.setblocking(False)
        self._poll = _readiness(sock, writing=False)
        self._writable = _readiness(sock, writing=True)
        # True once a send was cut off part-way: the stream is out of step for good.
        self.broken = False
        self._spinner = protocol.Spinner()
        # The current receive's deadline and spin choice, for _recv (one reader at a time).
        self._deadline: float | None = None
        self._spinning = False

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame accepted from the child."""
        return self._buffer.max_frame_bytes

    def send(self, message: dict[str, Any], deadline: float | None = None) -> None:
        self.send_frame(protocol.encode_frame(message), deadline)

    def send_frame(self, frame: bytes, deadline: float | None = None) -> None:
        """Send one frame whole.

        Raises:
            DeadlineExceeded: the child stopped reading and ``deadline`` passed; part of the
                frame may be sent, so the stream is broken and the child must be stopped.
            securepy.errors.ProtocolError: the child is gone.
        """
        try:
            sent = self._sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ProtocolError(f"the child is gone (send failed: {exc.strerror})") from exc
        if sent == len(frame):  # the usual case: the socket buffer had room
            return
        view = memoryview(frame)[sent:]
        try:
            while view:
                try:
                    sent = self._sock.send(view)
                except BlockingIOError:
                    try:
                        self._wait(self._writable, deadline)
                    except DeadlineExceeded:
                        self.broken = self.broken or len(view) < len(frame)
                        raise
                    continue
                view = view[sent:]
        except OSError as exc:
            raise ProtocolError(f"the child is gone (send failed: {exc.strerror})") from exc

    def receive(self, deadline: float | None, *, spin: bool = False) -> dict[str, Any]:
        """The next message from the child. ``spin``: poll briefly before sleeping, for a
        thread that expects the answer soon and has nothing else to do.

        Raises:
            DeadlineExceeded: ``deadline`` (a ``time.monotonic()`` value) passed first.
            securepy.errors.ProtocolError: EOF, a socket error or an invalid frame.
        """
        self._deadline = deadline
        self._spinning = spin
        try:
            return self._buffer.receive(self._recv)
        except protocol.FrameError as exc:
            raise _protocol_error(exc) from None

    def _recv(self, size: int) -> bytes:
        while True:
            try:
                chunk = self._spinner.recv(self._sock, size) if self._spinning else None
                if chunk is None:
                    # Wait first: the usual case is a request just sent and no answer yet,
                    # where a recv would only fail with EAGAIN.
                    self._wait(self._poll, self._deadline)
                    chunk = self._sock.recv(size)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise ProtocolError(f"the child is gone (receive failed: {exc})") from exc
            if not chunk:
                raise ProtocolError("the child closed the connection (it exited or crashed)")
            return chunk

    @staticmethod
    def _wait(poll: _Poll, deadline: float | None) -> None:
        if deadline is None:
            poll.poll()
            return
        remaining = deadline - time.monotonic()
        if (remaining <= 0 or not poll.poll(math.ceil(remaining * 1000))) and (
                time.monotonic() >= deadline):
            raise DeadlineExceeded

    def close(self) -> None:
        self._sock.close()


class AsyncChannel:
    """Asyncio host end of the socket (the socket is put in non-blocking mode)."""

    def __init__(self, sock: socket.socket, *, max_frame_bytes: int) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._buffer = _reader(max_frame_bytes)
        # Tool replies and the turn both send: whole frames, one at a time.
        self._send_lock = asyncio.Lock()
        # True once a send was interrupted: part of a frame may be out, the stream is lost.
        self.broken = False
        # The size of the last frame received: the turn decodes large ones off the loop too.
        self.last_frame_bytes = 0

    async def send(self, message: dict[str, Any], deadline: float | None = None) -> None:
        """Async counterpart of :meth:`Channel.send`; same arguments."""
        await self.send_frame(protocol.encode_frame(message), deadline)

    async def send_frame(self, frame: bytes, deadline: float | None = None) -> None:
        """Async counterpart of :meth:`Channel.send_frame`; same arguments."""
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
        try:
            async with asyncio.timeout(timeout):
                async with self._send_lock:
                    try:
                        await asyncio.get_running_loop().sock_sendall(self._sock, frame)
                    except BaseException:
                        self.broken = True
                        raise
        except TimeoutError:
            raise DeadlineExceeded from None
        except OSError as exc:
            raise ProtocolError(f"the child is gone (send failed: {exc.strerror})") from exc

    async def receive(self, deadline: float | None) -> dict[str, Any]:
        """Async counterpart of :meth:`Channel.receive`; same arguments."""
        loop = asyncio.get_running_loop()
        buffer = self._buffer
        while True:
            try:
                body = buffer.next_body()
                if body is not None:
                    self.last_frame_bytes = len(body)
                    if len(body) <= OFF_LOOP_BYTES:
                        return buffer.parse(body)
                    # Parsing megabytes takes milliseconds with the GIL held: in a thread, the
                    # loop serves everything else meanwhile.
                    return await asyncio.to_thread(buffer.parse, body)
            except protocol.FrameError as exc:
                raise _protocol_error(exc) from None
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise DeadlineExceeded
            try:
                async with asyncio.timeout(timeout):
                    chunk = await loop.sock_recv(self._sock, buffer.wanted())
            except TimeoutError:
                raise DeadlineExceeded from None
            except OSError as exc:
                raise ProtocolError(f"the child is gone (receive failed: {exc})") from exc
            if not chunk:
                raise ProtocolError("the child closed the connection (it exited or crashed)")
            buffer.data += chunk

    def close(self) -> None:
        self._sock.close()
