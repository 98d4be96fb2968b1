"""Starting sandboxes from one long-lived thread.

bubblewrap's ``--die-with-parent`` is ``PR_SET_PDEATHSIG``, which fires when the *thread* that
forked the child exits, not the process. Sessions are often started from short-lived threads
(thread pools, agent frameworks running sync tools), and their sandboxes would be killed with
that thread. So every sandbox is forked from this one daemon thread, which lives as long as the
host process: the sandbox still dies with the process, and only with it.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["spawn"]

T = TypeVar("T")

_Job = tuple[Callable[[], object], "concurrent.futures.Future[object]"]
_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_start_lock = threading.Lock()


def spawn(start: Callable[[], T]) -> T:
    """Run ``start`` (which forks a child) on the spawner thread and return its result."""
    if threading.current_thread() is _thread:
        return start()
    _ensure_thread()
    future: concurrent.futures.Future[object] = concurrent.futures.Future()
    _jobs.put((start, future))
    return future.result()  # type: ignore[return-value]


def _ensure_thread() -> None:
    global _thread
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_serve, name="securepy-spawner", daemon=True)
            _thread.start()


def _serve() -> None:
    while True:
        start, future = _jobs.get()
        try:
            future.set_result(start())
        except BaseException as exc:
            future.set_exception(exc)


def _forget_thread_after_fork() -> None:
    global _thread, _start_lock
    _thread = None
    _start_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_thread_after_fork)
