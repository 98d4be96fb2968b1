"""The workspace's files, for the host's ``session.files``. Stdlib only: runs inside the sandbox.

Requests come between executes (``files`` frames); code the session ran may still be running in
threads of its own and may be racing us: it can swap any directory on the path for a symbolic
link at any moment. So a path is never resolved as a string. It is walked one component at a
time from the workspace's directory fd with ``O_NOFOLLOW`` (``openat``, as ``openat2``'s
``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` would): a symbolic link anywhere on the path is
refused, never followed, and what is opened is checked on its fd (a regular file with no other
hard link). The sandbox's own wall stays the real bound: this only keeps honest requests to the
workspace the host asked for.

Where ``os`` has no ``dir_fd`` (Windows) the same requests go by path instead (``_FilesByPath``,
over ``files_by_path.py``), with the same replies. Only an unsandboxed child runs there, whose
code already has all the host user's powers: the race is no threat, and a link on the path is
still refused, as an honest mistake. macOS has ``dir_fd`` and takes the fd walk, without
``O_PATH`` (Linux only).

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

# Decided by what os offers, not by platform name, so Linux tests can take the other branch.
_BY_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")
# O_PATH (Linux) opens a directory with search permission alone; elsewhere O_RDONLY serves.
_DIR_FLAGS = (
    getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    if _BY_FD
    else 0
)


class _Refused(Exception):
    """A request the worker turns down: ``code`` for the host, ``detail`` for the message."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class _FilesByFd:
    """Serves ``files`` requests on the session's workspace, walking it by directory fd."""

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
            return self._send_file(fd, limit)
        finally:
            os.close(fd)

    def _send_file(self, fd: int, limit: int) -> dict[str, Any]:
        """Send the open file ``fd`` in ``file_chunk`` frames, if it is a regular file within
        ``limit`` bytes from start to end."""
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

    def _write(self, parts: list[str], data: str, offset: int) -> dict[str, Any]:
        raw = _payload(parts, data, offset)
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
        try:
            with os.scandir(fd) as scan:
                return _listing(scan)
        finally:
            os.close(fd)

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


class _FilesByPath(_FilesByFd):
    """The same service where ``os`` has no ``dir_fd`` (Windows): the four operations go by
    path, each component checked by ``files_by_path``; nothing of the fd walk runs. Only for an
    unsandboxed child: see the module's docstring."""

    def _read(self, parts: list[str], limit: int) -> dict[str, Any]:
        if not parts:
            raise _Refused("is_directory")
        fd = _open_path(self._path(parts, "read"), os.O_RDONLY)
        try:
            return self._send_file(fd, limit)
        finally:
            os.close(fd)

    def _write(self, parts: list[str], data: str, offset: int) -> dict[str, Any]:
        raw = _payload(parts, data, offset)
        path = self._path(parts, "write")
        fd = _open_path(path, os.O_WRONLY | os.O_CREAT)
        try:
            try:
                _check_regular(fd)
                if offset == 0:
                    os.ftruncate(fd, 0)
                os.lseek(fd, offset, os.SEEK_SET)  # Windows has no pwrite
                view = memoryview(raw)
                while view:
                    written = os.write(fd, view)
                    offset += written
                    view = view[written:]
            finally:
                os.close(fd)  # before the unlink: Windows cannot remove an open file
        except OSError:
            os.unlink(path)  # a half-written file would only hold the space
            raise
        return {"ok": True, "size": offset}

    def _list(self, parts: list[str]) -> dict[str, Any]:
        with os.scandir(self._path(parts, "list")) as scan:
            return _listing(scan)

    def _remove(self, parts: list[str]) -> dict[str, Any]:
        if not parts:
            raise _Refused("invalid", "the workspace itself cannot be removed")
        from .files_by_path import remove

        remove(self._path(parts, "remove"))
        return {"ok": True}

    def _path(self, parts: list[str], op: str) -> str:
        """The path of what ``parts`` names under the workspace (a file, or for ``list`` a
        directory), each directory on the way checked (made, mode 0755, where missing for a
        ``write``)."""
        from .files_by_path import plain, walk

        name = [] if op == "list" else parts[-1:]
        writing = op in ("write", "remove")
        start, parts = _start_of(self._workspace, parts[: len(parts) - len(name)], writing)
        if not plain(start, parts + name):
            raise _Refused("invalid", "not a plain file name on this platform")
        try:
            return os.path.join(walk(start, parts, create=op == "write"), *name)
        except OSError as exc:
            if isinstance(exc.filename, str):
                _explain(None, exc.filename, exc)
            raise


Files = _FilesByFd if _BY_FD else _FilesByPath


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


def _payload(parts: list[str], data: str, offset: int) -> bytes:
    """The bytes a write request carries, if they may be written at ``offset``."""
    if not parts:
        raise _Refused("is_directory")
    raw = binascii.a2b_base64(data)
    try:
        import resource  # here: the host imports this module too
    except ImportError:  # Windows: no RLIMIT_FSIZE to hit
        return raw
    file_limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if file_limit != resource.RLIM_INFINITY and offset + len(raw) > file_limit:
        raise _Refused("file_size", str(file_limit))  # the write would die of SIGXFSZ
    return raw


def _listing(scan: Any) -> dict[str, Any]:
    """The reply to ``list``: the first ``MAX_FILE_ENTRIES`` entries ``scan`` yields, sorted."""
    entries = []
    for entry in scan:
        info = entry.stat(follow_symlinks=False)
        entries.append([entry.name, info.st_size, _kind(info.st_mode)])
        if len(entries) >= MAX_FILE_ENTRIES:
            break
    entries.sort()
    return {"ok": True, "entries": entries}


def _open_last(parent: int, name: str, flags: int, mode: int = 0o644) -> int:
    # O_NONBLOCK: a FIFO the code planted must not hang the worker (it is refused just after).
    try:
        return os.open(
            name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=parent
        )
    except OSError as exc:
        _explain(parent, name, exc)
        raise


def _open_path(path: str, flags: int) -> int:
    from .files_by_path import open_file

    try:
        return open_file(path, flags)
    except OSError as exc:
        _explain(None, path, exc)
        raise


def _explain(parent: int | None, name: str, exc: OSError) -> None:
    """Turn "a link was in the way" errors (ELOOP, ENOTDIR, ENXIO) into a clear refusal.
    ``name`` is in the directory ``parent``, or a path when ``parent`` is None."""
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
    getattr(errno, "EDQUOT", errno.ENOSPC): "no_space",  # Windows may lack it
    errno.EFBIG: "file_size",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "read_only",
    errno.ENOTEMPTY: "not_empty",
}
