"""``session.files``: put files into a session's workspace and take them out.

Paths are relative to the workspace. The host refuses absolute paths and ``..`` before anything
is sent; the worker (``_worker/files.py``) then resolves each path inside the sandbox one
component at a time with ``O_NOFOLLOW``, so a symbolic link or hard link the code planted (even
one it swaps in while the host reads) is refused, never followed. What comes back is checked as
hostile: chunk sizes, base64, the total against ``MAX_READ_BYTES``, the listing's shape. Each
operation holds the session like an execute does, and runs against the session's timeout; a
worker that breaks the protocol or does not answer in time is replaced (state lost).
"""

from __future__ import annotations

import binascii
import os
import sys
import time
import typing
from collections.abc import Iterator
from typing import Any, NamedTuple

from ._channel import DeadlineExceeded
from ._child_text import error_reply
from ._worker import protocol
from .errors import (
    ExecutionTimeout,
    PolicyError,
    ProtocolError,
    ResourceLimitError,
)

if typing.TYPE_CHECKING:
    from ._child import Child
    from ._config import SessionConfig


class _SessionSide(typing.Protocol):
    """What files need of a session (a Protocol: _session imports this module)."""

    _config: SessionConfig
    _child: Child | None

    def _emit(self, event: str, **fields: Any) -> None: ...
    def _check_open(self) -> None: ...
    def _acquire_for_execute(self) -> None: ...
    def _release_after_execute(self) -> None: ...


class _SyncSession(_SessionSide, typing.Protocol):
    def _adopt_child(self, child: Child, reason: str | None) -> None: ...
    def _restart(self, reason: str) -> None: ...


class _AsyncSession(_SessionSide, typing.Protocol):
    async def start(self) -> None: ...
    async def _restart(self, reason: str) -> None: ...


__all__ = ["MAX_READ_BYTES", "AsyncFiles", "FileEntry", "Files"]

# files.read() refuses larger files (they would be held in host memory whole).
MAX_READ_BYTES = 256 * 1024 * 1024
_WRITE_CHUNK = 4 * 1024 * 1024
_DEFAULT_TIMEOUT = 30.0

FileData = bytes | bytearray | memoryview | str | os.PathLike[str]


class FileEntry(NamedTuple):
    """One entry of ``files.list()``: its name, size in bytes and kind ("file", "directory",
    "symlink" or "other")."""

    name: str
    size: int
    kind: str


class Files:
    """The workspace of a :class:`securepy.Session` (``session.files``)."""

    def __init__(self, session: _SyncSession) -> None:
        self._session = session

    def write(self, path: str | os.PathLike[str], data: FileData) -> None:
        """Write ``data`` to ``path`` in the workspace, replacing the file, making missing
        directories.

        Args:
            path: relative to the workspace (``"data/sales.csv"``).
            data: the content: ``bytes``, ``str`` (written as UTF-8), or a host file's path
                as a ``pathlib.Path`` (its content is copied in).

        Raises:
            ValueError: the path is absolute, holds ``..``, or is empty.
            securepy.errors.PolicyError: a symbolic link, hard link or special file the code
                made is in the way.
            securepy.errors.ResourceLimitError: over the file size limit or the workspace size.
        """
        name = normalize_path(path)
        limits = self._session._config.limits
        chunks = _payload(data, limits.file_size_bytes)
        with _Held(self._session) as held:
            offset = 0
            for chunk in chunks:
                reply = held.call(_write_request(name, chunk, offset))
                check_reply(reply, "write", name)
                offset += len(chunk)
        self._session._emit("file_write", path=name, size=offset)

    def read(self, path: str | os.PathLike[str]) -> bytes:
        """The content of the file at ``path`` in the workspace.

        Raises:
            FileNotFoundError, IsADirectoryError: as for a local file.
            securepy.errors.PolicyError: the path goes through a symbolic link, or the file
                has other hard links or is not a regular file.
            securepy.errors.ResourceLimitError: the file is over ``MAX_READ_BYTES`` (256 MiB).
        """
        name = normalize_path(path)
        with _Held(self._session) as held:
            reader = _Reader(MAX_READ_BYTES)
            reply = held.call(_read_request(name), reader)
        check_reply(reply, "read", name)
        content = reader.content(reply)
        self._session._emit("file_read", path=name, size=len(content))
        return content

    def list(self, path: str | os.PathLike[str] = ".") -> list[FileEntry]:
        """The entries of the directory ``path`` (default: the workspace), sorted by name;
        symbolic links are listed as such, never followed."""
        name = normalize_path(path, allow_root=True)
        with _Held(self._session) as held:
            reply = held.call(_request("list", name))
        check_reply(reply, "list", name)
        return entries_from(reply)

    def remove(self, path: str | os.PathLike[str]) -> None:
        """Remove the file, link or directory (with its content) at ``path``."""
        name = normalize_path(path)
        with _Held(self._session) as held:
            reply = held.call(_request("remove", name))
        check_reply(reply, "remove", name)
        self._session._emit("file_remove", path=name)


class AsyncFiles:
    """The workspace of a :class:`securepy.AsyncSession`: :class:`Files` as coroutines."""

    def __init__(self, session: _AsyncSession) -> None:
        self._session = session

    async def write(self, path: str | os.PathLike[str], data: FileData) -> None:
        """See :meth:`Files.write`."""
        name = normalize_path(path)
        chunks = _payload(data, self._session._config.limits.file_size_bytes)
        async with _AsyncHeld(self._session) as held:
            offset = 0
            for chunk in chunks:
                reply = await held.call(_write_request(name, chunk, offset))
                check_reply(reply, "write", name)
                offset += len(chunk)
        self._session._emit("file_write", path=name, size=offset)

    async def read(self, path: str | os.PathLike[str]) -> bytes:
        """See :meth:`Files.read`."""
        name = normalize_path(path)
        async with _AsyncHeld(self._session) as held:
            reader = _Reader(MAX_READ_BYTES)
            reply = await held.call(_read_request(name), reader)
        check_reply(reply, "read", name)
        content = reader.content(reply)
        self._session._emit("file_read", path=name, size=len(content))
        return content

    async def list(self, path: str | os.PathLike[str] = ".") -> list[FileEntry]:
        """See :meth:`Files.list`."""
        name = normalize_path(path, allow_root=True)
        async with _AsyncHeld(self._session) as held:
            reply = await held.call(_request("list", name))
        check_reply(reply, "list", name)
        return entries_from(reply)

    async def remove(self, path: str | os.PathLike[str]) -> None:
        """See :meth:`Files.remove`."""
        name = normalize_path(path)
        async with _AsyncHeld(self._session) as held:
            reply = await held.call(_request("remove", name))
        check_reply(reply, "remove", name)
        self._session._emit("file_remove", path=name)


def normalize_path(path: Any, *, allow_root: bool = False) -> str:
    """``path`` as the worker wants it: relative, "/"-separated, without "." or "".

    Raises:
        TypeError: not a str or path.
        ValueError: absolute, with ``..``, a NUL, empty (unless ``allow_root``) or too long.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or a path, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError("path must be text, not bytes")
    if sys.platform == "win32":  # "data\\in.csv" is a path there too, and "C:" a drive
        text = text.replace("\\", "/")
        if ":" in text:
            raise ValueError(
                f"path {text[:200]!r} names a drive or a stream; files paths are relative to "
                "the session's workspace, e.g. 'data/input.csv'"
            )
    if text.startswith("/"):
        raise ValueError(
            f"path {text[:200]!r} is absolute; files paths are relative to the "
            "session's workspace, e.g. 'data/input.csv'"
        )
    if "\0" in text:
        raise ValueError("path contains a NUL character")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(
            f"path {text[:200]!r} contains '..'; files paths stay inside the session's workspace"
        )
    if not parts and not allow_root:
        raise ValueError(f"path {text[:200]!r} names the workspace itself; give a file's path")
    if len(text) > 4096 or any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        raise ValueError(f"path {text[:200]!r}... is too long")
    return "/".join(parts)


def _payload(data: Any, file_limit: int | None) -> list[bytes] | Iterator[bytes]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        _check_size(len(raw), file_limit)
        return [raw[i : i + _WRITE_CHUNK] for i in range(0, len(raw), _WRITE_CHUNK)] or [b""]
    if isinstance(data, os.PathLike):
        size = os.stat(data).st_size  # FileNotFoundError names the host path
        _check_size(size, file_limit)
        return _host_file_chunks(os.fspath(data), file_limit)
    raise TypeError(
        f"data must be bytes, str or a host path (pathlib.Path), not {type(data).__name__}"
    )


def _host_file_chunks(path: str, file_limit: int | None) -> Iterator[bytes]:
    with open(path, "rb") as source:
        total = 0
        while True:
            chunk = source.read(_WRITE_CHUNK)
            total += len(chunk)
            _check_size(total, file_limit)  # it may grow while we copy it
            yield chunk
            if not chunk:
                return


def _check_size(size: int, file_limit: int | None) -> None:
    if file_limit is not None and size > file_limit:
        raise ResourceLimitError(
            f"the file is {size} bytes, over the session's file size limit of {file_limit} "
            "bytes (Limits.file_size_bytes)",
            limit="file_size",
            state_kept=True,
        )


def _write_request(name: str, chunk: bytes, offset: int) -> bytes:
    return protocol.encode_frame_with_data(
        {"kind": "files", "op": "write", "path": name, "offset": offset}, chunk
    )


def _read_request(name: str) -> bytes:
    return protocol.encode_frame(
        {"kind": "files", "op": "read", "path": name, "max": MAX_READ_BYTES}
    )


def _request(op: str, name: str) -> bytes:
    return protocol.encode_frame({"kind": "files", "op": op, "path": name})


class _Reader:
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


def check_reply(reply: dict[str, Any], op: str, name: str) -> None:
    """Raise the error a failed ``file_reply`` names (its text is the host's own)."""
    if reply["ok"]:
        return
    code = str(reply.get("error", ""))[:50]
    detail = str(reply.get("detail", ""))[:200]
    where = f"files.{op}({name!r})"
    if code == "too_large":
        raise ResourceLimitError(
            f"{where}: the file is over the {MAX_READ_BYTES}-byte read "
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


def _between_turns(
    message: dict[str, Any], reader: _Reader | None
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


class _Held:
    """Holds a Session for one files operation: its child, channel and deadline."""

    def __init__(self, session: _SyncSession) -> None:
        self._session = session

    def __enter__(self) -> _Held:
        session = self._session
        session._check_open()
        session._acquire_for_execute()
        try:
            if session._child is None:
                from ._child import start_child

                session._adopt_child(start_child(session._config), "the previous child was stopped")
        except BaseException:
            session._release_after_execute()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._session._release_after_execute()

    def call(self, request: bytes, reader: _Reader | None = None) -> dict[str, Any]:
        session = self._session
        child = session._child
        assert child is not None
        timeout = session._config.timeout or _DEFAULT_TIMEOUT
        deadline = time.monotonic() + timeout
        try:
            with child.send_lock:
                child.channel.send_frame(request, deadline)
            while True:
                reply, answer = _between_turns(child.channel.receive(deadline), reader)
                if reply is not None:
                    return reply
                if answer is not None:
                    with child.send_lock:
                        child.channel.send(answer, deadline)
        except ProtocolError as exc:
            session._restart(f"the child broke the protocol in a files request: {exc}")
            raise
        except DeadlineExceeded:
            session._restart("the child did not answer a files request in time")
            raise ExecutionTimeout(timeout, state_kept=False) from None
        except BaseException:
            session._restart("a files request was abandoned by an exception on the host")
            raise


class _AsyncHeld:
    """:class:`_Held` for an AsyncSession."""

    def __init__(self, session: _AsyncSession) -> None:
        self._session = session

    async def __aenter__(self) -> _AsyncHeld:
        session = self._session
        session._check_open()
        session._acquire_for_execute()
        try:
            if session._child is None:
                await session.start()
        except BaseException:
            session._release_after_execute()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._session._release_after_execute()

    async def call(self, request: bytes, reader: _Reader | None = None) -> dict[str, Any]:
        session = self._session
        child = session._child
        assert child is not None
        channel = child.async_channel
        timeout = session._config.timeout or _DEFAULT_TIMEOUT
        deadline = time.monotonic() + timeout
        try:
            await channel.send_frame(request, deadline)
            while True:
                reply, answer = _between_turns(await channel.receive(deadline), reader)
                if reply is not None:
                    return reply
                if answer is not None:
                    await channel.send(answer, deadline)
        except ProtocolError as exc:
            await session._restart(f"the child broke the protocol in a files request: {exc}")
            raise
        except DeadlineExceeded:
            await session._restart("the child did not answer a files request in time")
            raise ExecutionTimeout(timeout, state_kept=False) from None
        except BaseException:
            await session._restart("a files request was abandoned by an exception on the host")
            raise
