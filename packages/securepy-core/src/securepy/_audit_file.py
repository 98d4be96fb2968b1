"""The audit log's file: one open file per path and process, shared by every auditor writing to
it, appended line by line under a lock (and an ``flock`` against other processes), each line
chained to the last one in the file by its hash. Opening refuses links, directories, devices
and other special files, and syncs a new file's directory."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import typing
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock, so appends there are not locked against other processes
    fcntl = None  # type: ignore[assignment]

from ._audit_record import GENESIS_HASH, HASH_SUFFIX, serialize

__all__ = ["AuditFile", "refuse_special_file"]


def _seal(record: dict[str, Any], prev_hash: str) -> bytes:
    """Chain ``record`` to ``prev_hash``: fill in ``prev_hash`` and ``hash``; the line's bytes."""
    record["prev_hash"] = prev_hash
    body = serialize(record)
    digest = hashlib.sha256(body.encode("ascii")).hexdigest()
    record["hash"] = digest
    return f'{body[:-1]}, "hash": "{digest}"}}\n'.encode("ascii")


class AuditFile:
    """One open audit file, shared by every auditor of this process that writes to it."""

    _registry: typing.ClassVar[dict[tuple[int, int], AuditFile]] = {}
    _registry_lock: typing.ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str, fd: int, key: tuple[int, int]) -> None:
        self.path = path
        self._fd = fd
        self._key = key
        self._users = 0
        self._lock = threading.Lock()
        self._known_size = -1
        self._last_hash = GENESIS_HASH

    @classmethod
    def acquire(cls, path: str) -> AuditFile:
        """The shared writer for ``path``, opening the file if this process has not yet."""
        fd, key = _open_audit_file(path)
        with cls._registry_lock:
            writer = cls._registry.get(key)
            if writer is None:
                writer = cls._registry[key] = cls(path, fd, key)
            else:
                os.close(fd)
            writer._users += 1
            return writer

    def release(self) -> None:
        """One user fewer; the last one closes the file."""
        with self._registry_lock:
            self._users -= 1
            if self._users > 0:
                return
            del self._registry[self._key]
        with self._lock:
            os.close(self._fd)
            self._fd = -1

    def append(self, record: dict[str, Any]) -> None:
        """Chain ``record`` to the file's last line and append it durably.

        Raises:
            OSError: the write or the sync failed.
        """
        with self._lock:
            if self._fd < 0:
                raise OSError(errno.EBADF, "the audit log is closed")
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                line, size = self._next_line(record)
                _write_all(self._fd, line)
                os.fdatasync(self._fd)
                self._known_size = size + len(line)
                self._last_hash = record["hash"]
            finally:
                if fcntl is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _next_line(self, record: dict[str, Any]) -> tuple[bytes, int]:
        """The sealed line; re-reads the tail when another process appended since our last."""
        size = os.fstat(self._fd).st_size
        prefix = b""
        if size != self._known_size:
            tail = _read_last_line(self._fd, size)
            self._last_hash = _hash_of_line(tail) if tail else GENESIS_HASH
            if tail and not tail.endswith(b"\n"):
                # A line cut short by a crash stays on its own line; verify reports it.
                prefix = b"\n"
        return prefix + _seal(record, self._last_hash), size


def _open_audit_file(path: str) -> tuple[int, tuple[int, int]]:
    """Open ``path`` to append (creating it 0600) and to read its tail; refuse anything but a
    regular file."""
    refuse_special_file(path)
    flags = (
        os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    )  # O_NONBLOCK: a FIFO swapped in after the check must not hang us
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _raise_refused(path, "is a symbolic link")
        if exc.errno == errno.EISDIR:
            _raise_refused(path, "is a directory")
        raise ValueError(
            f"cannot open the audit log {path!r}: {exc.strerror}; check that its directory "
            "exists and is writable, or pass another audit_log= path"
        ) from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        _raise_refused(path, "is not a regular file")
    if info.st_size == 0:
        _sync_directory(path)
    return fd, (info.st_dev, info.st_ino)


def refuse_special_file(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        _raise_refused(path, "is a symbolic link")
    if stat.S_ISDIR(info.st_mode):
        _raise_refused(path, "is a directory")
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        _raise_refused(path, "is a device")
    if not stat.S_ISREG(info.st_mode):
        _raise_refused(path, "is not a regular file")


def _raise_refused(path: str, what: str) -> typing.NoReturn:
    raise ValueError(
        f"the audit log {path!r} {what}; audit_log= must name a regular file (or a new one "
        "to create) in a directory you control, not a symlink, a directory or a device"
    )


def _sync_directory(path: str) -> None:
    """Make the new file's directory entry durable, so a crash cannot lose the file itself."""
    try:
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the data itself is still synced
    finally:
        os.close(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    # A regular file takes the whole line in one write; the loop covers the rare partial one
    # (signal, quota) without ever splitting a line across two appends by another writer,
    # since we hold both locks.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_last_line(fd: int, size: int, chunk: int = 65536) -> bytes:
    """The file's last line (with its newline, if it has one), or b"" for an empty file."""
    end = size
    data = b""
    while end > 0:
        start = max(0, end - chunk)
        data = os.pread(fd, end - start, start) + data
        end = start
        cut = data.rfind(b"\n", 0, len(data) - 1)
        if cut >= 0:
            return data[cut + 1 :]
    return data


def _hash_of_line(line: bytes) -> str:
    """The chain value a line passes on: its ``hash`` if well formed, else its bytes' digest."""
    text = line.rstrip(b"\n").decode("ascii", "replace")
    match = HASH_SUFFIX.search(text)
    return match.group(1) if match else hashlib.sha256(line.rstrip(b"\n")).hexdigest()
