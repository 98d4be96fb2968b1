"""The audit log: one hash-chained JSON object per line, and an optional callback sink.

Each line is a JSON object (ASCII only, so no value can smuggle a raw newline in)::

    {"timestamp": "2025-01-31T12:00:00.123Z", "event": "execute_start",
     "session_id": "3f2a...", "seq": 4, ...the event's fields...,
     "prev_hash": "<hash of the line before>", "hash": "<sha256 of this line>"}

``hash`` is the SHA-256 (hex) of the line's text up to, not including, ``, "hash": ...``;
``prev_hash`` is the ``hash`` of the previous line in the file (64 zeros on the first line).
Editing a line breaks its own hash; deleting, inserting or reordering lines breaks the next
line's ``prev_hash``. :func:`verify_audit_log` walks the chain.

Bounds: every value is recorded, whatever its type (ints past 64 bits, bytes, NaN, sets, any
object), non-JSON values as tagged text ``{"$type": "bytes", "length": 9, "text": "b'...'"}``;
long text keeps its head and its tail around a marker, and long code or arguments also carry
their full length and SHA-256 (``code_length``/``code_sha256``, ``arguments_size``/
``arguments_sha256``), so a payload placed past the cut is visible as such; no line exceeds
``MAX_LINE_BYTES``. Recording never raises. Events the sandboxed code drives (tool calls,
results, refusals, denials) are written one by one up to ``BURST_RECORDS`` per second per
session; past that, each kind is counted and written as one ``events_aggregated`` record per
burst, so a loop of denied calls cannot make the host write and sync its disk without bound.
The ``audit=`` callback receives exactly the records written (JSON-serialisable by
construction). :func:`verify_audit_log` also reports gaps in a session's ``seq`` (lost records).

Several sessions and threads of one process share one writer per file (found by device and
inode), which serializes appends under a lock; other processes are kept out of the middle of an
append by ``flock``. Each line goes out in one ``O_APPEND`` write followed by ``fdatasync``, so a
crash of the host loses at most the line being written.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import re
import stat
import threading
import time
import typing
import weakref
from collections.abc import Callable
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock, so appends there are not locked against other processes
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CODE_LIMIT",
    "MAX_LINE_BYTES",
    "Auditor",
    "VerifyResult",
    "check_audit_path",
    "open_auditor",
    "verify_audit_log",
]

from ._audit_record import (
    CODE_LIMIT,
    MAX_LINE_BYTES,
    build_record,
    serialize,
    utc_timestamp,
)

logger = logging.getLogger("securepy")

AuditCallback = Callable[[dict[str, Any]], Any]

GENESIS_HASH = "0" * 64
BURST_SECONDS = 1.0
BURST_RECORDS = 64
# Events the sandboxed code can repeat at will: rate-limited into aggregate records.
_CHILD_DRIVEN = frozenset({"tool_call", "tool_result", "tool_error", "policy_denied"})
_HASH_SUFFIX = re.compile(r', "hash": "([0-9a-f]{64})"\}\Z')


@typing.final
class Auditor:
    """Hands one session's events to the audit file and/or the ``audit=`` callback.

    Each event gets a timestamp, the session id and the session's next sequence number. The
    callback receives exactly the dict written to the file (with ``prev_hash`` and ``hash``
    when there is a file). A callback that raises is logged and ignored: the session goes on.
    """

    def __init__(
        self, session_id: str, writer: _AuditFile | None, callback: AuditCallback | None
    ) -> None:
        self.session_id = session_id
        self._writer = writer
        self._callback = callback
        self._sequence = 0
        self._closed = False
        self._burst = _Burst()
        # The lock spans numbering and writing, so sequence numbers reach the file in order.
        self._lock = threading.Lock()
        self._release = weakref.finalize(self, _release_writer, writer)

    @property
    def path(self) -> str | None:
        """The audit file's path, or None when events go to the callback only."""
        return self._writer.path if self._writer is not None else None

    def emit(self, event: str, fields: dict[str, Any]) -> None:
        """Record one event. Never raises: a failing sink is logged, the session goes on.

        Args:
            event: the event name, e.g. ``"execute_start"``.
            fields: the event's fields; values are bounded and made JSON-safe here.
        """
        records: list[dict[str, Any]] = []
        with self._lock:
            if self._closed:
                return
            if event in _CHILD_DRIVEN:
                if not self._burst.admit(event, fields):
                    return
            else:
                self._burst.end_burst()
            for held_event, held_fields in self._burst.take_summaries():
                records.append(self._write(held_event, held_fields))
            records.append(self._write(event, fields))
        for record in records:
            self._call_back(record)

    def _write(self, event: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Number, build and append one record (the lock is held); return it."""
        self._sequence += 1
        try:
            record = build_record(event, self.session_id, self._sequence, fields)
        except Exception as exc:  # recording must never fail the session: a bare record
            record = {
                "timestamp": utc_timestamp(),
                "event": str(event)[:200],
                "session_id": self.session_id,
                "seq": self._sequence,
                "record_error": type(exc).__name__,
            }
        if self._writer is not None:
            try:
                self._writer.append(record)
            except Exception as exc:  # disk full, I/O error: logged; verify shows the gap
                logger.error(
                    "audit log %s: could not write a %s event: %s", self._writer.path, event, exc
                )
        return record

    def _call_back(self, record: dict[str, Any]) -> None:
        if self._callback is None:
            return
        try:
            self._callback(dict(record))
        except Exception:  # a user's sink must not break the session
            logger.warning(
                "the audit callback failed on a %s event of session %s",
                record.get("event"),
                self.session_id,
                exc_info=True,
            )

    def close(self) -> None:
        """Stop recording and release the file (closed when its last session lets go)."""
        records: list[dict[str, Any]] = []
        with self._lock:
            if not self._closed:
                self._burst.end_burst()
                for held_event, held_fields in self._burst.take_summaries():
                    records.append(self._write(held_event, held_fields))
            self._closed = True
        for record in records:
            self._call_back(record)
        self._release()


class _Burst:
    """Counts child-driven events per burst window; holds what is over the per-window quota
    and turns it into one ``events_aggregated`` record per event kind."""

    def __init__(self) -> None:
        self._started = -math.inf
        self._written = 0
        self._held: dict[str, dict[str, Any]] = {}
        self._ready: list[tuple[str, dict[str, Any]]] = []

    def admit(self, event: str, fields: dict[str, Any]) -> bool:
        """True: write this event now. False: it was counted into the burst's summary."""
        now = time.monotonic()
        if now - self._started > BURST_SECONDS:
            self.end_burst()
            self._started = now
        if self._written < BURST_RECORDS:
            self._written += 1
            return True
        held = self._held.get(event)
        if held is None:
            held = self._held[event] = {
                "aggregated_event": event,
                "count": 0,
                "tools": {},
                "first": utc_timestamp(),
                "example": fields,
            }
        held["count"] += 1
        held["last"] = utc_timestamp()
        tools = held["tools"]
        tool = str(fields.get("tool", ""))[:100]
        if tool in tools or len(tools) < 20:
            tools[tool] = tools.get(tool, 0) + 1
        else:
            held["other_tools"] = held.get("other_tools", 0) + 1
        return False

    def end_burst(self) -> None:
        """Close the current window: what it held becomes ready to write."""
        for summary in self._held.values():
            example = summary.pop("example")
            summary["example"] = {k: v for k, v in example.items() if k != "arguments"}
            self._ready.append(("events_aggregated", summary))
        self._held = {}
        self._written = 0
        self._started = -math.inf

    def take_summaries(self) -> list[tuple[str, dict[str, Any]]]:
        ready, self._ready = self._ready, []
        return ready


def open_auditor(
    session_id: str,
    path: str | os.PathLike[str] | None,
    callback: AuditCallback | None,
) -> Auditor | None:
    """An auditor for these sinks, or None when there are none.

    Args:
        session_id: the id stamped on every event.
        path: the JSON-lines file to append to (created 0600), or None.
        callback: called with each event dict, or None.

    Raises:
        ValueError: ``path`` is a symlink, a directory, a device or anything but a regular
            file, or it cannot be opened for appending; the message names the path and the fix.
    """
    if path is None and callback is None:
        return None
    writer = _AuditFile.acquire(os.fspath(path)) if path is not None else None
    return Auditor(session_id, writer, callback)


def check_audit_path(path: str | os.PathLike[str]) -> None:
    """Refuse an unusable audit path early (e.g. when a pool freezes its options), without
    creating the file: :func:`open_auditor` checks again when it opens it.

    Raises:
        ValueError: ``path`` is a symlink, a directory or a device, or its directory is missing.
    """
    text = os.fspath(path)
    _refuse_special_file(text)
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise ValueError(
            f"cannot open the audit log {text!r}: its directory {directory!r} does not exist; "
            "create it or pass another audit_log= path"
        )


def _release_writer(writer: _AuditFile | None) -> None:
    if writer is not None:
        writer.release()


def _seal(record: dict[str, Any], prev_hash: str) -> bytes:
    """Chain ``record`` to ``prev_hash``: fill in ``prev_hash`` and ``hash``; the line's bytes."""
    record["prev_hash"] = prev_hash
    body = serialize(record)
    digest = hashlib.sha256(body.encode("ascii")).hexdigest()
    record["hash"] = digest
    return f'{body[:-1]}, "hash": "{digest}"}}\n'.encode("ascii")


# -- the file --------------------------------------------------------------------------------


class _AuditFile:
    """One open audit file, shared by every auditor of this process that writes to it."""

    _registry: typing.ClassVar[dict[tuple[int, int], _AuditFile]] = {}
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
    def acquire(cls, path: str) -> _AuditFile:
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
    _refuse_special_file(path)
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


def _refuse_special_file(path: str) -> None:
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
    match = _HASH_SUFFIX.search(text)
    return match.group(1) if match else hashlib.sha256(line.rstrip(b"\n")).hexdigest()


# -- verification ----------------------------------------------------------------------------


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class VerifyResult:
    """What :func:`verify_audit_log` found.

    Attributes:
        ok: True when every line is intact and chained to the one before.
        lines: lines read (up to and including the broken one when not ok).
        broken_line: 1-based number of the first line that fails, or None.
        reason: why that line fails ("" when ok).
        head: the ``hash`` of the last intact line (64 zeros for an empty file). Keep it
            somewhere else to detect later removal of lines from the end of the file, which a
            chain alone cannot show.
        gaps: one text per jump in a session's ``seq`` (records that were never written,
            e.g. because the disk was full); any gap makes ``ok`` False, and ``broken_line``
            and ``reason`` name the first when the chain itself holds.
    """

    ok: bool
    lines: int
    broken_line: int | None = None
    reason: str = ""
    head: str = GENESIS_HASH
    gaps: tuple[str, ...] = ()


def verify_audit_log(path: str | os.PathLike[str]) -> VerifyResult:
    """Check an audit log's hash chain, line by line.

    Args:
        path: the audit log.

    Returns:
        A :class:`VerifyResult`: ok with the line count, or the first broken line and why.

    Raises:
        OSError: the file cannot be read.
    """
    previous = GENESIS_HASH
    number = 0
    gaps: list[str] = []
    first_gap: int | None = None
    sequences: dict[str, int] = {}
    with open(os.fspath(path), "rb") as file:
        for number, raw in enumerate(file, start=1):
            problem, digest = _check_line(raw, previous)
            if problem:
                return VerifyResult(False, number, number, problem, previous, tuple(gaps))
            previous = digest
            gap = _sequence_gap(raw, sequences, number)
            if gap:
                gaps.append(gap)
                first_gap = first_gap or number
    if gaps:
        return VerifyResult(False, number, first_gap, gaps[0], previous, tuple(gaps))
    return VerifyResult(True, number, None, "", previous)


def _sequence_gap(raw: bytes, sequences: dict[str, int], number: int) -> str:
    """A description of the jump in this line's session ``seq``, or ""."""
    record = json.loads(raw)
    session, seq = record.get("session_id"), record.get("seq")
    if type(session) is not str or type(seq) is not int:
        return ""
    last = sequences.get(session)
    sequences[session] = seq
    if last is None or seq == last + 1:
        return ""
    return (
        f"line {number}: session {session[:64]} jumps from seq {last} to {seq} "
        f"({seq - last - 1} records missing: a write failed or lines were removed)"
    )


def _check_line(raw: bytes, previous: str) -> tuple[str, str]:
    """("", this line's hash), or (what is wrong, "")."""
    if not raw.endswith(b"\n"):
        return "the line is incomplete (no newline): a write was cut short or the file was cut", ""
    try:
        text = raw[:-1].decode("ascii")
    except UnicodeDecodeError:
        return "the line holds non-ASCII bytes, which securepy never writes", ""
    match = _HASH_SUFFIX.search(text)
    if match is None:
        return "the line has no hash at its end", ""
    body = text[: match.start()] + "}"
    try:
        record = json.loads(body)
    except ValueError:
        return "the line is not valid JSON", ""
    if not isinstance(record, dict):
        return "the line is not a JSON object", ""
    if hashlib.sha256(body.encode("ascii")).hexdigest() != match.group(1):
        return "the line's content does not match its hash: it was edited", ""
    if record.get("prev_hash") != previous:
        return (
            "the line's prev_hash does not match the line before it: lines were deleted, "
            "inserted or reordered"
        ), ""
    return "", match.group(1)
