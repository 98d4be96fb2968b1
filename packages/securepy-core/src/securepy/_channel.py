"""The host end of the socket: frames out, validated messages in, caps and deadlines.

This is the one place where socket errors, EOF, oversized frames and bad JSON from the child
become :class:`securepy.errors.ProtocolError`. Everything above sees only valid messages.
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import socket
import time
from typing import Any

from ._worker import protocol
from .errors import ProtocolError

__all__ = ["AsyncChannel", "Channel", "DeadlineExceeded", "open_socketpair"]


# How long receive(spin=True) polls before sleeping. On a VM, waking a thread that slept costs
# tens of microseconds when the child ran on another CPU; polling finds a quick answer at once.
_SPIN_SECONDS = 100e-6
_SPIN_BACKOFF_MAX = 64


class DeadlineExceeded(Exception):
    """The deadline passed before a whole message arrived (the buffer keeps what did)."""


def open_socketpair() -> tuple[socket.socket, socket.socket]:
    """A connected pair: the host's end, and the child's (inheritable) end."""
    host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child.set_inheritable(True)
    return host, child


class _FrameBuffer:
    """Bytes received so far, cut into frames with the size cap checked before the body."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.data = bytearray()

    def next_message(self) -> dict[str, Any] | None:
        if len(self.data) < protocol.HEADER.size:
            return None
        (length,) = protocol.HEADER.unpack_from(self.data)
        if length > self.max_frame_bytes:
            raise ProtocolError(
                f"the child sent a frame of {length} bytes, over the {self.max_frame_bytes}-byte"
                " cap (max_frame_bytes)"
            )
        end = protocol.HEADER.size + length
        if len(self.data) < end:
            return None
        body = bytes(self.data[protocol.HEADER.size:end])
        del self.data[:end]
        return _parse(body)

    def parse_whole(self, chunk: bytes) -> dict[str, Any] | None:
        """``chunk`` parsed, if it is exactly one whole frame within the cap and nothing is
        buffered (the usual case); else None, and the caller buffers it."""
        size = protocol.HEADER.size
        if self.data or len(chunk) < size:
            return None
        (length,) = protocol.HEADER.unpack_from(chunk)
        if length != len(chunk) - size or length > self.max_frame_bytes:
            return None
        return _parse(chunk[size:])

    def wanted(self) -> int:
        """How many bytes to ask the socket for next."""
        if len(self.data) >= protocol.HEADER.size:
            length: int = protocol.HEADER.unpack_from(self.data)[0]
            missing = protocol.HEADER.size + min(length, self.max_frame_bytes) - len(self.data)
            return max(missing, 65536)
        return 65536


def _parse(body: bytes) -> dict[str, Any]:
    try:
        return protocol.parse_body(body, protocol.CHILD_MESSAGES)
    except protocol.FrameError as exc:
        raise ProtocolError(f"the child sent an invalid frame: {exc}") from None


class Channel:
    """Blocking host end of the socket."""

    def __init__(self, sock: socket.socket, *, max_frame_bytes: int) -> None:
        self._sock = sock
        self._buffer = _FrameBuffer(max_frame_bytes)
        # Non-blocking plus our own poll: a socket timeout would cost two fcntl calls per
        # receive, because the deadline (and so the timeout) changes every time.
        sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(sock, select.POLLOUT)
        # True once a send was cut off part-way: the stream is out of step for good.
        self.broken = False
        self._spin_backoff = 0
        self._spin_skips = 0

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
        buffer = self._buffer
        while True:
            if buffer.data:
                message = buffer.next_message()
                if message is not None:
                    return message
            try:
                chunk = self._spin(buffer.wanted()) if spin else None
                if chunk is None:
                    # Wait first: the usual case is a request just sent and no answer yet,
                    # where a recv would only fail with EAGAIN.
                    self._wait(self._poll, deadline)
                    chunk = self._sock.recv(buffer.wanted())
            except BlockingIOError:
                continue
            except OSError as exc:
                raise ProtocolError(f"the child is gone (receive failed: {exc})") from exc
            if not chunk:
                raise ProtocolError("the child closed the connection (it exited or crashed)")
            message = buffer.parse_whole(chunk)
            if message is not None:
                return message
            buffer.data += chunk

    def _spin(self, size: int) -> bytes | None:
        """Try to receive for up to _SPIN_SECONDS (yielding the CPU between tries); after a
        spin in vain, skip spinning for the next receives, longer each time."""
        if self._spin_skips:
            self._spin_skips -= 1
            return None
        give_up = time.monotonic() + _SPIN_SECONDS
        while True:
            try:
                chunk = self._sock.recv(size)
            except BlockingIOError:
                if time.monotonic() <= give_up:
                    os.sched_yield()
                    continue
                self._spin_backoff = min(self._spin_backoff * 2 or 1, _SPIN_BACKOFF_MAX)
                self._spin_skips = self._spin_backoff
                return None
            self._spin_backoff //= 2
            return chunk

    @staticmethod
    def _wait(poll: select.poll, deadline: float | None) -> None:
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
        self._buffer = _FrameBuffer(max_frame_bytes)
        # Tool replies and the turn both send: whole frames, one at a time.
        self._send_lock = asyncio.Lock()
        # True once a send was interrupted: part of a frame may be out, the stream is lost.
        self.broken = False

    async def send(self, message: dict[str, Any], deadline: float | None = None) -> None:
        """Async counterpart of :meth:`Channel.send`; same arguments."""
        frame = protocol.encode_frame(message)
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
        while True:
            message = self._buffer.next_message()
            if message is not None:
                return message
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise DeadlineExceeded
            try:
                async with asyncio.timeout(timeout):
                    chunk = await loop.sock_recv(self._sock, self._buffer.wanted())
            except TimeoutError:
                raise DeadlineExceeded from None
            except OSError as exc:
                raise ProtocolError(f"the child is gone (receive failed: {exc})") from exc
            if not chunk:
                raise ProtocolError("the child closed the connection (it exited or crashed)")
            self._buffer.data += chunk

    def close(self) -> None:
        self._sock.close()
