"""The worker's end of the socket, over the one framer in protocol.py. Stdlib only."""

from __future__ import annotations

# The C module behind socket: the Python wrapper imports enum, which costs milliseconds at
# every start and buys the worker nothing.
import _socket
import os
import threading

from . import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = ["Connection", "MessageTooLarge"]


class MessageTooLarge(ValueError):
    """A message would exceed the host's frame cap (the host would stop the child)."""


class Connection:
    """The worker's end of the socket: buffered frame reads, locked frame writes."""

    def __init__(self, fd: int) -> None:
        self._sock = _socket.socket(fileno=fd)
        # The host is trusted to frame correctly; its frames are capped only by the header.
        self._reader = protocol.FrameReader(protocol.HOST_MESSAGES, _HOST_FRAME_CAP)
        self._send_lock = threading.Lock()
        # The host's cap on the frames it accepts, from the configure message.
        self.max_frame_bytes = protocol.MAX_FRAME_BYTES
        self._spinner = protocol.Spinner()

    def send(self, message: dict[str, Any]) -> None:
        """Send one message whole.

        Raises:
            MessageTooLarge: the encoded message is over the host's cap (nothing is sent).
        """
        self.send_frame(protocol.encode_frame(message))

    def send_frame(self, frame: bytes) -> None:
        """Send one encoded frame whole (see :meth:`send`)."""
        if len(frame) - protocol.HEADER.size > self.max_frame_bytes:
            raise MessageTooLarge(
                f"the message is {len(frame)} bytes, over the host's {self.max_frame_bytes}-byte"
                " frame limit (max_frame_bytes)"
            )
        with self._send_lock:
            self._sock.sendall(frame)

    def receive(self) -> dict[str, Any]:
        """The next message from the host (see protocol.FrameReader). A bad frame from the
        host means the stream is broken: the worker ends."""
        try:
            return self._reader.receive(self._recv)
        except protocol.FrameError:
            os._exit(70)  # the host never sends a bad frame

    def _recv(self, size: int) -> bytes:
        chunk = self._spinner.recv(self._sock, size)
        if chunk is None:
            chunk = self._sock.recv(size)
        if not chunk:
            os._exit(0)  # the host hung up: nothing left to serve
        return chunk


_HOST_FRAME_CAP = 2**32 - 1
