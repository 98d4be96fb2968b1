"""The code's stdout and stderr, captured and streamed to the host as output frames. Stdlib only."""

from __future__ import annotations

import _thread
import io
import os
import select
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

    from .connection import Connection

__all__ = ["Outputs", "capture_output"]


class Outputs:
    """stdout/stderr of the code, as streamed ``output`` frames."""

    def __init__(self, connection: Connection, pipes: dict[str, int]) -> None:
        self._connection = connection
        self._pipes = pipes
        self._lock = threading.Lock()
        self.streams: list[_OutputStream] = []
        self._ready: Any = None
        if hasattr(select, "poll"):
            self._ready = select.poll()
            for fd in pipes.values():
                self._ready.register(fd, select.POLLIN)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()
        # Under the lock: the forwarder may have read the pipe just now and not yet sent what
        # it read; the turn must not end before that output is on its way.
        with self._lock:
            # poll: one syscall when, as usual, nothing was written to fds 1, 2
            if self._ready is None or self._ready.poll(0):
                self._drain_locked()

    def drain_pipes(self) -> None:
        with self._lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        for name, fd in self._pipes.items():
            while True:
                if self._ready is None and not _has_output(fd):
                    break  # a blocking pipe: read only what is there
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:
                    break
                self.send(name, data.decode("utf-8", "replace"))

    def send(self, stream: str, text: str) -> None:
        # Frames well under any cap: a single huge print must not end the session.
        for start in range(0, len(text), _OUTPUT_CHUNK):
            self._connection.send(
                {"kind": "output", "stream": stream, "text": text[start : start + _OUTPUT_CHUNK]}
            )

    def forward_forever(self) -> None:
        fds = list(self._pipes.values())
        while True:
            if self._ready is None:
                # Windows cannot wait on a pipe: look every few milliseconds instead.
                time.sleep(_LOOK_EVERY)
            else:
                select.select(fds, [], [])
            self.drain_pipes()


_LOOK_EVERY = 0.02  # seconds between looks at fds 1, 2 where the worker cannot wait on them


def _has_output(fd: int) -> bool:
    """Whether a pipe holds bytes to read, where select.poll is missing (Windows)."""
    if os.name == "nt":
        import _winapi
        import msvcrt

        handle = msvcrt.get_osfhandle(fd)  # type: ignore[attr-defined, unused-ignore]
        available: int = _winapi.PeekNamedPipe(handle, 0)[0]  # type: ignore[attr-defined, unused-ignore]
        return available > 0
    return bool(select.select([fd], [], [], 0)[0])


_OUTPUT_CHUNK = 64 * 1024  # characters: at most 256 KiB of UTF-8 per frame


class _OutputStream(io.TextIOBase):
    """A text stream that sends what is written, a line at a time."""

    def __init__(self, outputs: Outputs, name: str, fd: int) -> None:
        self._outputs = outputs
        self._name = name
        self._fd = fd
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            if "\n" not in text and self._size < 8192:
                return len(text)
            data, self._parts, self._size = "".join(self._parts), [], 0
        self._outputs.send(self._name, data)
        return len(text)

    def flush(self) -> None:
        if not self._parts:  # as usual at the end of a turn: no lock needed to see that
            return
        with self._lock:
            if not self._parts:
                return
            data, self._parts, self._size = "".join(self._parts), [], 0
        self._outputs.send(self._name, data)


def capture_output(connection: Connection) -> Outputs:
    """Point fds 1 and 2 at pipes forwarded by a thread (for subprocesses and C code), and
    sys.stdout/sys.stderr at line-buffered frame writers (for Python code)."""
    pipes = {}
    for name, fd in (("stdout", 1), ("stderr", 2)):
        read_end, write_end = os.pipe()
        try:  # noqa: SIM105 (contextlib costs the worker's start an import)
            os.set_blocking(read_end, False)
        except (AttributeError, OSError):
            pass  # Windows before 3.12: reads there take only what _has_output saw
        os.dup2(write_end, fd)
        os.close(write_end)
        pipes[name] = read_end
    outputs = Outputs(connection, pipes)
    stdout, stderr = _OutputStream(outputs, "stdout", 1), _OutputStream(outputs, "stderr", 2)
    outputs.streams = [stdout, stderr]
    sys.stdout = sys.__stdout__ = stdout  # type: ignore[misc, assignment]
    sys.stderr = sys.__stderr__ = stderr  # type: ignore[misc, assignment]
    # The low-level start: threading.Thread.start() waits until the thread runs, which costs
    # a context switch at every session start, and the forwarder has nothing to do yet.
    _thread.start_new_thread(outputs.forward_forever, ())
    return outputs
