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

import logging
import math
import os
import threading
import time
import typing
import weakref
from collections.abc import Callable
from typing import Any

__all__ = [
    "CODE_LIMIT",
    "MAX_LINE_BYTES",
    "Auditor",
    "VerifyResult",
    "check_audit_path",
    "open_auditor",
    "verify_audit_log",
]

from ._audit_file import AuditFile, refuse_special_file
from ._audit_record import (
    CODE_LIMIT,
    MAX_LINE_BYTES,
    build_record,
    utc_timestamp,
)
from ._audit_verify import VerifyResult, verify_audit_log

logger = logging.getLogger("securepy")

AuditCallback = Callable[[dict[str, Any]], Any]

BURST_SECONDS = 1.0
BURST_RECORDS = 64
# Events the sandboxed code can repeat at will: rate-limited into aggregate records.
_CHILD_DRIVEN = frozenset({"tool_call", "tool_result", "tool_error", "policy_denied"})


@typing.final
class Auditor:
    """Hands one session's events to the audit file and/or the ``audit=`` callback.

    Each event gets a timestamp, the session id and the session's next sequence number. The
    callback receives exactly the dict written to the file (with ``prev_hash`` and ``hash``
    when there is a file). A callback that raises is logged and ignored: the session goes on.
    """

    def __init__(
        self, session_id: str, writer: AuditFile | None, callback: AuditCallback | None
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
    writer = AuditFile.acquire(os.fspath(path)) if path is not None else None
    return Auditor(session_id, writer, callback)


def check_audit_path(path: str | os.PathLike[str]) -> None:
    """Refuse an unusable audit path early (e.g. when a pool freezes its options), without
    creating the file: :func:`open_auditor` checks again when it opens it.

    Raises:
        ValueError: ``path`` is a symlink, a directory or a device, or its directory is missing.
    """
    text = os.fspath(path)
    refuse_special_file(text)
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise ValueError(
            f"cannot open the audit log {text!r}: its directory {directory!r} does not exist; "
            "create it or pass another audit_log= path"
        )


def _release_writer(writer: AuditFile | None) -> None:
    if writer is not None:
        writer.release()


