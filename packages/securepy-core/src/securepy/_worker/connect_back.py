"""The worker's socket where it cannot inherit one (Windows, ``sandbox=False``). Stdlib only.

There a child inherits no socket by number and no signal but Ctrl+C reaches it, so the host
(``_launchers/portable.py``) listens on a loopback port and writes one line to the worker's
stdin: ``<host> <port> <token>``. The worker connects and sends the token, which is how the host
tells it from any other local process that connects first. Stdin then stays open as the host's
second line to the worker: a byte ``i`` is an interrupt (KeyboardInterrupt in the code, as
SIGINT is on POSIX), and its end means the host is gone, so the worker ends too.

The POSIX unsandboxed launcher keeps such a stdin too (``WATCH_STDIN`` in the environment):
nothing else ends a plain child whose host was killed while its code runs (a sandbox dies with
the host through bubblewrap's ``--die-with-parent`` or the Landlock keeper).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import _socket
import _thread
import os

__all__ = ["INTERRUPT", "MAX_LINE", "WATCH_STDIN", "connect_to_host", "watch_host"]

INTERRUPT = b"i"
MAX_LINE = 512  # bytes: the line is about 90
WATCH_STDIN = "SECUREPY_WATCH_STDIN"


def connect_to_host() -> int:
    """Connect to the address stdin names, prove who we are, and return the socket's fd (the
    session server wraps it as it wraps an inherited one). Watches stdin from then on."""
    line, rest = _read_line(0)
    host, port, token = line.decode("ascii").split(" ")
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)  # frames, not a byte stream
    sock.connect((host, int(port)))
    sock.sendall(bytes.fromhex(token))
    watch_host(rest)
    return int(sock.detach())


def _read_line(fd: int) -> tuple[bytes, bytes]:
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, MAX_LINE)
        if not chunk or len(data) > MAX_LINE:
            raise SystemExit("securepy worker: the host sent no address on stdin")
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


def watch_host(pending: bytes = b"") -> None:
    """Watch stdin from a thread of its own: interrupts, and the host's end. ``pending``:
    bytes already read from it."""
    _thread.start_new_thread(_watch, (0, pending))


def _watch(fd: int, pending: bytes) -> None:
    data = pending
    while True:
        for _ in range(data.count(INTERRUPT)):
            _thread.interrupt_main(_signal.SIGINT)  # runs the session's SIGINT handler
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if not data:
            os._exit(0)  # the host closed our stdin or died: nothing left to serve
