"""The workspace's files, for the host's ``session.files``. Stdlib only: runs inside the sandbox.

Requests come between executes (``files`` frames); code the session ran may still be running in
threads of its own and may be racing us: it can swap any directory on the path for a symbolic
link at any moment. So a path is never resolved as a string. It is walked one component at a
time from the workspace's directory fd with ``O_NOFOLLOW`` (``openat``, as ``openat2``'s
``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` would): a symbolic link anywhere on the path is
refused, never followed, and what is opened is checked on its fd (a regular file with no other
hard link). The sandbox's own wall stays the real bound: this only keeps honest requests to the
workspace the host asked for.

The host checks every reply as hostile (sizes, types); these checks spare it honest mistakes.
"""

from __future__ import annotations

import binascii
import errno
import os
import stat
import sys

from .protocol import MAX_FILE_ENTRIES, encode_frame_with_data

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = ["CHUNK_BYTES", "Files"]

CHUNK_BYTES = 4 * 1024 * 1024  # raw bytes per file_chunk frame (base64: 5.4 MiB)

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Refused(Exception):
    """A request the worker turns down: ``code`` for the host, ``detail`` for the message."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Files:
    """Serves ``files`` requests on the session's workspace."""

    def __init__(self, send: Any, send_frame: Any, workspace: str, max_frame_bytes: int) -> None:
        self._send = send
        self._send_frame = send_frame
        self._workspace = workspace  # the cwd at start, before any code could change it
        # Each chunk's frame (base64 and its envelope) must fit the host's frame cap.
        self._chunk = max(512, min(CHUNK_BYTES, (max_frame_bytes - 256) // 4 * 3))

    def handle(self, message: dict[str, Any]) -> None:
        """Serve one request; always answer with exactly one ``file_reply``."""
        try:
            parts = _parts(message.get("path"))
            op = message.get("op")
            if op == "read":
                reply = self._read(parts, int(message.get("max") or 0))
            elif op == "write":
                reply = self._write(
                    parts, message.get("data") or "", int(message.get("offset") or 0)
                )
            elif op == "list":
                reply = self._list(parts)
            elif op == "remove":
                reply = self._remove(parts)
            else:
                raise _Refused("invalid", f"unknown operation {op!r}")
        except _Refused as exc:
            reply = {"ok": False, "error": exc.code, "detail": exc.detail[:500]}
        except OSError as exc:
            reply = {
                "ok": False,
                "error": _ERRNO_CODES.get(exc.errno or 0, "os_error"),
                "detail": (exc.strerror or str(exc))[:500],
            }
        self._send({"kind": "file_reply", **reply})

    def _read(self, parts: list[str], limit: int) -> dict[str, Any]:
        if not parts:
            raise _Refused("is_directory")
        parent = self._walk(parts[:-1], create=False)
        try:
            fd = _open_last(parent, parts[-1], os.O_RDONLY)
        finally:
            os.close(parent)
        try:
            size = _check_regular(fd).st_size
            if size > limit:
                raise _Refused("too_large", str(size))
            sent = 0
            while sent <= limit:
                chunk = os.read(fd, min(self._chunk, limit + 1 - sent))
                if not chunk:
                    break
                sent += len(chunk)
                if sent > limit:  # it grew while we read
                    raise _Refused("too_large", str(sent))
                self._send_frame(encode_frame_with_data({"kind": "file_chunk"}, chunk))
            return {"ok": True, "size": sent}
        finally:
            os.close(fd)

    def _write(self, parts: list[str], data: str, offset: int) -> dict[str, Any]:
        if not parts:
            raise _Refused("is_directory")
        raw = binascii.a2b_base64(data)
        import resource  # here: the host imports this module too, and Windows has none

        file_limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if file_limit != resource.RLIM_INFINITY and offset + len(raw) > file_limit:
            raise _Refused("file_size", str(file_limit))  # the write would die of SIGXFSZ
        parent = self._walk(parts[:-1], create=True, writing=True)
        try:
            fd = _open_last(parent, parts[-1], os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                _check_regular(fd)
                if offset == 0:
                    os.ftruncate(fd, 0)
                view = memoryview(raw)
                while view:
                    written = os.pwrite(fd, view, offset)
                    offset += written
                    view = view[written:]
            except OSError:
                # A half-written file (the workspace filled up) would only hold the space.
                os.unlink(parts[-1], dir_fd=parent)
                raise
            finally:
                os.close(fd)
        finally:
            os.close(parent)
        return {"ok": True, "size": offset}

    def _list(self, parts: list[str]) -> dict[str, Any]:
        fd = self._walk(
            parts, create=False, flags=os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        )
        entries = []
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    info = entry.stat(follow_symlinks=False)
                    entries.append([entry.name, info.st_size, _kind(info.st_mode)])
                    if len(entries) >= MAX_FILE_ENTRIES:
                        break
        finally:
            os.close(fd)
        entries.sort()
        return {"ok": True, "entries": entries}

    def _remove(self, parts: list[str]) -> dict[str, Any]:
        if not parts:
            raise _Refused("invalid", "the workspace itself cannot be removed")
        parent = self._walk(parts[:-1], create=False, writing=True)
        try:
            name = parts[-1]
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                import shutil

                # With dir_fd, rmtree works through fds and never follows a link: safe against
                # code that swaps a directory for a link while it runs.
                shutil.rmtree(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)  # a link itself, never its target
        finally:
            os.close(parent)
        return {"ok": True}

    def _walk(
        self, parts: list[str], *, create: bool, flags: int = _DIR_FLAGS, writing: bool = False
    ) -> int:
        """An fd of the directory ``parts`` names under the workspace, with no symbolic link
        followed on the way (made, mode 0755, where missing and ``create``). A path within a
        mount the Landlock wall shows by a link is walked from the mount's host path."""
        start, parts = _start_of(self._workspace, parts, writing)
        fd = os.open(start, _DIR_FLAGS if parts else flags)
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            try:
                try:
                    step = os.open(part, flags if last else _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:  # noqa: SIM105 (contextlib costs the worker's start an import)
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass  # made meanwhile (by the code, maybe as a link: the open decides)
                    step = os.open(part, flags if last else _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                _explain(fd, part, exc)
                raise
            finally:
                os.close(fd)
            fd = step
        return fd


def _start_of(workspace: str, parts: list[str], writing: bool) -> tuple[str, list[str]]:
    """Where a walk of ``parts`` starts: the workspace, or the host path of the Landlock
    mount whose link ``parts`` passes through (the code may have replaced that link: the host
    path is what the host named, and all the wall lets it reach)."""
    landlock = sys.modules.get(__name__.rpartition(".")[0] + ".landlock")
    mounts = getattr(landlock, "MOUNTS", None) or {}
    for count in range(len(parts), 0, -1):
        mount = mounts.get("/".join(parts[:count]))
        if mount is not None:
            if writing and not mount[1]:
                raise _Refused("read_only", "/".join(parts[:count]))
            return mount[0], parts[count:]
    return workspace, parts


def _parts(path: Any) -> list[str]:
    # The host sends normalised relative paths; a forged request gets the same refusal.
    if not isinstance(path, str) or path.startswith("/") or "\0" in path:
        raise _Refused("invalid", "not a relative path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Refused("invalid", "'..' is not allowed")
    return parts


def _open_last(parent: int, name: str, flags: int, mode: int = 0o644) -> int:
    # O_NONBLOCK: a FIFO the code planted must not hang the worker (it is refused just after).
    try:
        return os.open(
            name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=parent
        )
    except OSError as exc:
        _explain(parent, name, exc)
        raise


def _explain(parent: int, name: str, exc: OSError) -> None:
    """Turn "a link was in the way" errors (ELOOP, ENOTDIR, ENXIO) into a clear refusal."""
    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.EISDIR):
        return
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except OSError:
        return
    if stat.S_ISLNK(mode):
        raise _Refused("symlink", name) from None
    if stat.S_ISDIR(mode) and exc.errno == errno.EISDIR:
        raise _Refused("is_directory", name) from None
    if not stat.S_ISDIR(mode) and exc.errno == errno.ENOTDIR:
        raise _Refused("not_directory", name) from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise _Refused("special", name) from None


def _check_regular(fd: int) -> os.stat_result:
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise _Refused("is_directory")
    if not stat.S_ISREG(info.st_mode):
        raise _Refused("special")
    if info.st_nlink > 1:
        # A hard link the code made could name a file the host did not mean to touch.
        raise _Refused("hard_link", str(info.st_nlink))
    return info


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


_ERRNO_CODES = {
    errno.ENOENT: "not_found",
    errno.EISDIR: "is_directory",
    errno.ENOTDIR: "not_directory",
    errno.ELOOP: "symlink",
    errno.ENOSPC: "no_space",
    errno.EDQUOT: "no_space",
    errno.EFBIG: "file_size",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "read_only",
    errno.ENOTEMPTY: "not_empty",
}
