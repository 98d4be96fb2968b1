"""``session.files``: put files into a session's workspace and take them out.

Paths are relative to the workspace. The host refuses absolute paths and ``..`` before anything
is sent; the worker (``_worker/files.py``) then resolves each path inside the sandbox one
component at a time with ``O_NOFOLLOW``, so a symbolic link or hard link the code planted (even
one it swaps in while the host reads) is refused, never followed. What comes back is checked as
hostile (``_files_wire.py``: chunk sizes, base64, the total, the listing's shape). Each
operation holds the session like an execute does, and runs against the session's timeout; a
worker that breaks the protocol or does not answer in time is replaced (state lost).
"""

from __future__ import annotations

import os
import sys
import time
import typing
from collections.abc import Iterator
from typing import Any

from ._channel import DeadlineExceeded
from ._files_wire import (
    MAX_READ_BYTES,
    ChunkReader,
    FileEntry,
    between_turns,
    check_reply,
    entries_from,
    file_request,
    read_request,
    write_request,
)
from .errors import (
    ExecutionTimeout,
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

_WRITE_CHUNK = 4 * 1024 * 1024
_DEFAULT_TIMEOUT = 30.0

FileData = bytes | bytearray | memoryview | str | os.PathLike[str]


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
                reply = held.call(write_request(name, chunk, offset))
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
            reader = ChunkReader(MAX_READ_BYTES)
            reply = held.call(read_request(name, MAX_READ_BYTES), reader)
        check_reply(reply, "read", name, MAX_READ_BYTES)
        content = reader.content(reply)
        self._session._emit("file_read", path=name, size=len(content))
        return content

    def list(self, path: str | os.PathLike[str] = ".") -> list[FileEntry]:
        """The entries of the directory ``path`` (default: the workspace), sorted by name;
        symbolic links are listed as such, never followed."""
        name = normalize_path(path, allow_root=True)
        with _Held(self._session) as held:
            reply = held.call(file_request("list", name))
        check_reply(reply, "list", name)
        return entries_from(reply)

    def remove(self, path: str | os.PathLike[str]) -> None:
        """Remove the file, link or directory (with its content) at ``path``."""
        name = normalize_path(path)
        with _Held(self._session) as held:
            reply = held.call(file_request("remove", name))
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
                reply = await held.call(write_request(name, chunk, offset))
                check_reply(reply, "write", name)
                offset += len(chunk)
        self._session._emit("file_write", path=name, size=offset)

    async def read(self, path: str | os.PathLike[str]) -> bytes:
        """See :meth:`Files.read`."""
        name = normalize_path(path)
        async with _AsyncHeld(self._session) as held:
            reader = ChunkReader(MAX_READ_BYTES)
            reply = await held.call(read_request(name, MAX_READ_BYTES), reader)
        check_reply(reply, "read", name, MAX_READ_BYTES)
        content = reader.content(reply)
        self._session._emit("file_read", path=name, size=len(content))
        return content

    async def list(self, path: str | os.PathLike[str] = ".") -> list[FileEntry]:
        """See :meth:`Files.list`."""
        name = normalize_path(path, allow_root=True)
        async with _AsyncHeld(self._session) as held:
            reply = await held.call(file_request("list", name))
        check_reply(reply, "list", name)
        return entries_from(reply)

    async def remove(self, path: str | os.PathLike[str]) -> None:
        """See :meth:`Files.remove`."""
        name = normalize_path(path)
        async with _AsyncHeld(self._session) as held:
            reply = await held.call(file_request("remove", name))
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

    def call(self, request: bytes, reader: ChunkReader | None = None) -> dict[str, Any]:
        session = self._session
        child = session._child
        assert child is not None
        timeout = session._config.timeout or _DEFAULT_TIMEOUT
        deadline = time.monotonic() + timeout
        try:
            with child.send_lock:
                child.channel.send_frame(request, deadline)
            while True:
                reply, answer = between_turns(child.channel.receive(deadline), reader)
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

    async def call(self, request: bytes, reader: ChunkReader | None = None) -> dict[str, Any]:
        session = self._session
        child = session._child
        assert child is not None
        channel = child.async_channel
        timeout = session._config.timeout or _DEFAULT_TIMEOUT
        deadline = time.monotonic() + timeout
        try:
            await channel.send_frame(request, deadline)
            while True:
                reply, answer = between_turns(await channel.receive(deadline), reader)
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
