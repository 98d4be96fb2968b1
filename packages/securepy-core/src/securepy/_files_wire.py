"""The ``session.files`` protocol: the requests the host sends, and the child's replies
checked as hostile (chunk sizes, base64, the total against ``MAX_READ_BYTES``, the listing's
shape, the reply's error code mapped to the host's own exception and text).

``_files.py`` holds the session and calls these; nothing here does I/O.
"""

from __future__ import annotations

import binascii
from typing import Any, NamedTuple

from ._child_text import error_reply
from ._worker import protocol
from .errors import PolicyError, ProtocolError, ResourceLimitError

__all__ = [
    "MAX_READ_BYTES",
    "ChunkReader",
    "FileEntry",
    "between_turns",
    "check_reply",
    "entries_from",
    "file_request",
    "read_request",
    "write_request",
]

# files.read() refuses larger files (they would be held in host memory whole).
MAX_READ_BYTES = 256 * 1024 * 1024


class FileEntry(NamedTuple):
    """One entry of ``files.list()``: its name, size in bytes and kind ("file", "directory",
    "symlink" or "other")."""

    name: str
    size: int
    kind: str


def write_request(name: str, chunk: bytes, offset: int) -> bytes:
    return protocol.encode_frame_with_data(
        {"kind": "files", "op": "write", "path": name, "offset": offset}, chunk
    )


def read_request(name: str, limit: int) -> bytes:
    return protocol.encode_frame({"kind": "files", "op": "read", "path": name, "max": limit})


def file_request(op: str, name: str) -> bytes:
    return protocol.encode_frame({"kind": "files", "op": op, "path": name})


class ChunkReader:
    """Collects a read's ``file_chunk`` frames, bounded as the child is hostile."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0

    def take(self, data: str) -> None:
        try:
            chunk = binascii.a2b_base64(data, strict_mode=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("the child sent a file chunk that is not valid base64") from None
        self._size += len(chunk)
        if self._size > self._limit:
            raise ProtocolError(f"the child sent more than the {self._limit}-byte read bound")
        self._chunks.append(chunk)

    def content(self, reply: dict[str, Any]) -> bytes:
        if reply.get("size") != self._size:
            raise ProtocolError("the child's file reply does not match the chunks it sent")
        return b"".join(self._chunks)


_ERRORS: dict[str, tuple[type[Exception], str]] = {
    "not_found": (FileNotFoundError, "no such file or directory"),
    "is_directory": (IsADirectoryError, "is a directory"),
    "not_directory": (NotADirectoryError, "a part of the path is not a directory"),
    "not_empty": (OSError, "the directory is not empty"),
    "permission": (PermissionError, "permission denied"),
    "read_only": (PermissionError, "it is on a read-only mount"),
    "symlink": (
        PolicyError,
        "a symbolic link is on the path; session.files never follows "
        "links (the code could point them anywhere)",
    ),
    "hard_link": (
        PolicyError,
        "the file has other hard links; session.files refuses it (the "
        "code could have linked a file it should not be able to hand "
        "out)",
    ),
    "special": (PolicyError, "not a regular file (a device, FIFO or socket)"),
    "invalid": (ValueError, "not a valid path"),
}


def check_reply(reply: dict[str, Any], op: str, name: str,
                read_limit: int = MAX_READ_BYTES) -> None:
    """Raise the error a failed ``file_reply`` names (its text is the host's own);
    ``read_limit``: the bound the read asked for."""
    if reply["ok"]:
        return
    code = str(reply.get("error", ""))[:50]
    detail = str(reply.get("detail", ""))[:200]
    where = f"files.{op}({name!r})"
    if code == "too_large":
        raise ResourceLimitError(
            f"{where}: the file is over the {read_limit}-byte read "
            "bound (files.MAX_READ_BYTES)",
            limit="output",
            state_kept=True,
        )
    if code == "no_space":
        raise ResourceLimitError(
            f"{where}: the workspace is full (Limits.workspace_bytes)",
            limit="workspace",
            state_kept=True,
        )
    if code == "file_size":
        raise ResourceLimitError(
            f"{where}: over the file size limit (Limits.file_size_bytes)",
            limit="file_size",
            state_kept=True,
        )
    error, text = _ERRORS.get(code, (OSError, f"failed ({detail or code})"))
    raise error(f"{where}: {text}")


def entries_from(reply: dict[str, Any]) -> list[FileEntry]:
    """The listing of a ``file_reply``, each entry checked."""
    raw = reply.get("entries")
    if not isinstance(raw, list) or len(raw) > protocol.MAX_FILE_ENTRIES:
        raise ProtocolError("the child sent a malformed file listing")
    entries = []
    for item in raw:
        if not (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], int)
            and not isinstance(item[1], bool)
            and item[2] in ("file", "directory", "symlink", "other")
        ):
            raise ProtocolError("the child sent a malformed file listing entry")
        entries.append(FileEntry(item[0][:1024], item[1], item[2]))
    return entries


def between_turns(
    message: dict[str, Any], reader: ChunkReader | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the reply if this message is it, a frame to answer with), for one child message.

    Threads the code left running may print or call tools meanwhile: their output is dropped
    (no execute is there to take it) and their tool calls are refused."""
    kind = message["kind"]
    if kind == "file_reply":
        return message, None
    if kind == "file_chunk" and reader is not None:
        reader.take(message["data"])
        return None, None
    if kind in ("output", "display"):
        return None, None
    if kind == "tool_call":
        return None, error_reply(
            message["call_id"], "ToolError", "tools answer only while an execute runs"
        )
    raise ProtocolError(f"the child sent an unexpected {kind!r} message during a files request")
