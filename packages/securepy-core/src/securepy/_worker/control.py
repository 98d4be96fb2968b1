"""The template's control messages, shared by the host's launcher and the template. Stdlib
only: the template runs inside the sandbox.

One JSON object per SOCK_SEQPACKET message, with file descriptors alongside (SCM_RIGHTS): the
session's socket and its cgroup files going in, a pidfd coming back. The messages are listed
in ``template.py``. Both ends are securepy's own code (the sessions never see this socket), so
a malformed message is not an attack to parse defensively, but it still ends the stream
(``{}``) rather than raising anywhere else.
"""

from __future__ import annotations

import _socket
import array
import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["receive_control", "send_control"]

MESSAGE_BYTES = 65536
MAX_FDS = 4


def send_control(sock: Any, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()
                 ) -> None:
    """Send ``message`` with ``fds`` attached."""
    ancillary = ([(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds))]
                 if fds else [])
    sock.sendmsg([json.dumps(message).encode()], ancillary)


def receive_control(sock: Any) -> tuple[dict[str, Any], list[int]]:
    """The next message and the fds it carried (the caller owns and must close them); an
    empty dict at end of stream or for a message that is not a JSON object."""
    fds = array.array("i")
    data, ancillary, _flags, _address = sock.recvmsg(
        MESSAGE_BYTES, _socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    try:
        message = json.loads(data) if data else {}
    except ValueError:
        message = {}
    return (message if isinstance(message, dict) else {}), list(fds)
