"""The audit log: one JSON object per line, hash-chained, plus an optional callback sink.

(Interface in place; the full file handling lives here too.)
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Auditor", "open_auditor"]


class Auditor:
    """Writes a session's events to a file and/or hands them to a callback."""

    def __init__(self, session_id: str, path: str | None,
                 callback: Callable[[dict[str, Any]], Any] | None) -> None:
        self.session_id = session_id
        self._path = path
        self._callback = callback
        self._sequence = 0
        self._lock = threading.Lock()

    def emit(self, event: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self._sequence += 1
            record = {
                "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
                "event": event,
                "session_id": self.session_id,
                "seq": self._sequence,
                **fields,
            }
        if self._path is not None:
            line = json.dumps(record, default=repr) + "\n"
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        if self._callback is not None:
            self._callback(record)

    def close(self) -> None:
        """Flush and release the sink."""


def open_auditor(
    session_id: str,
    path: str | os.PathLike[str] | None,
    callback: Callable[[dict[str, Any]], Any] | None,
) -> Auditor | None:
    """An auditor for these sinks, or None when there are none."""
    if path is None and callback is None:
        return None
    return Auditor(session_id, os.fspath(path) if path is not None else None, callback)
