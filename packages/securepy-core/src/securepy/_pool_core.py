"""The thread-based core both pool twins share (see ``_pool.py``): a fixed number of slots,
each *idle* (a started session waiting to be handed out), *busy* (checked out), *starting* (a
background thread runs ``start_child``) or *dead* (the last start failed and the slot waits
before it retries); the threads that fill and empty them; the waiters that want a session.
Handing a session out and taking it back cost a lock and a deque operation, never a process
start or a kill."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import threading
import time
import typing
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ._child import Child, start_child
from ._config import SessionConfig, check_timeout
from ._launchers import has_a_wall
from ._launchers.template import TemplateLauncher
from ._session import AsyncSession, Session
from .errors import PoolTimeout, SandboxUnavailableError, SessionClosedError

__all__ = ["MAX_POOL_SIZE", "PoolCore", "PoolStatus", "returned_to"]

logger = logging.getLogger("securepy")

# Starting a child is mostly CPU-bound interpreter start-up: more parallel starts than cores
# only queue for the CPU, while one start per core keeps a draining pool refilling quickly.
# Two at least, so closing a retired session never waits behind a start.
_MAX_STARTER_THREADS = 4
# One host runs at most this many sessions per pool (as securer allows): each is a process
# with its own memory limit, so a larger pool is more likely a typo than a plan.
MAX_POOL_SIZE = 100
# A failed start is retried after a delay that doubles each time; after this many failures in
# a row with none in progress, waiting callers get the error instead of their acquire_timeout.
_FAILURES_BEFORE_GIVING_UP = 3
_FIRST_RETRY_DELAY = 0.1
_MAX_RETRY_DELAY = 5.0

S = TypeVar("S", Session, AsyncSession)


@typing.final
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PoolStatus:
    """A snapshot of a pool's slots; ``total == idle + busy + starting + dead``.

    Attributes:
        total: the pool's size (0 once the pool is closed).
        idle: started sessions ready to be handed out.
        busy: sessions checked out right now.
        starting: sessions being started in the background.
        dead: slots whose last start failed and that wait before they retry.
        last_start_error: why the most recent start failed, while starts keep failing; None
            once a start succeeds again.
    """

    total: int
    idle: int
    busy: int
    starting: int
    dead: int
    last_start_error: str | None = None


@contextlib.contextmanager
def returned_to(core: PoolCore[S], session: S) -> Iterator[None]:
    """Give ``session`` back to ``core`` when the checkout ends, however it ends.

    A KeyboardInterrupt, a cancellation or a generator exit may cut an execute short on the
    host side and leave its child mid-turn: such a session is retired, never handed out again,
    even with ``reset_between_uses=False``. An ordinary exception leaves the session sound.
    """
    try:
        yield
    except Exception:
        core.release(session, interrupted=False)
        raise
    except BaseException:
        core.release(session, interrupted=True)
        raise
    core.release(session, interrupted=False)


class PoolCore(Generic[S]):
    """The slots of a pool, the threads that fill them and the waiters that want them.

    One lock guards all state. Sync waiters block on the condition; async waiters register a
    callback that wakes their future. Starting and closing sessions happens in background
    threads, started on demand and ended when there is no more work.
    """

    def __init__(
        self,
        config: SessionConfig,
        size: int,
        *,
        acquire_timeout: float | None,
        reset_between_uses: bool,
        template: bool,
        wrap: Callable[[SessionConfig, Child], S],
        close_session: Callable[[S], None],
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an integer, not {type(size).__name__}")
        if not 1 <= size <= MAX_POOL_SIZE:
            raise ValueError(f"size must be between 1 and {MAX_POOL_SIZE}, got {size} (a pool "
                             "holds one host's sessions; spread more over several hosts)")
        if not isinstance(reset_between_uses, bool):
            raise TypeError("reset_between_uses must be True or False")
        if not isinstance(template, bool):
            raise TypeError("template must be True or False")
        self._template: TemplateLauncher | None = None
        if (template and config.sandbox and config.launcher is None and has_a_wall()
                and config.wall != "landlock"):
            # Where no template can run, sessions start on the wall "auto" picks (or the
            # pinned one), so a pool's sessions have the same wall a plain Session would.
            self._template = TemplateLauncher(preload=config.preload, fall_back=True,
                                              wall=config.wall)
            config = dataclasses.replace(config, launcher=self._template)
        else:  # each session starts on its own, as asked: not from the shared template either
            config = dataclasses.replace(config, template=False)
        self.config = config
        self.size = size
        self.acquire_timeout = check_timeout(acquire_timeout)
        self.reset_between_uses = reset_between_uses
        self._wrap: Callable[[SessionConfig, Child], S] = wrap
        self._close_session: Callable[[S], None] = close_session
        self._cond = threading.Condition(threading.Lock())
        self._idle: collections.deque[S] = collections.deque()
        self._busy: set[S] = set()
        self._to_start = size  # slots waiting for a starter thread
        self._in_flight = 0  # slots whose child a thread is starting now
        self._dead = 0  # slots waiting to retry after a failed start
        self._retiring: list[S] = []
        self._listeners: set[Callable[[], None]] = set()
        self._threads: list[threading.Thread] = []
        self._thread_count = max(2, min(size, _MAX_STARTER_THREADS, os.cpu_count() or 2))
        self._failures = 0  # consecutive failed starts
        self._last_error: BaseException | None = None
        self._closed = False
        self._start_threads()

    # -- checkout -------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """The absolute time an acquire started now gives up."""
        timeout = self.acquire_timeout
        return None if timeout is None else time.monotonic() + timeout

    def acquire(self, deadline: float | None) -> S:
        """A live idle session, waiting for one until ``deadline``."""
        with self._cond:
            while True:
                session = self._take_locked()
                if session is not None:
                    return session
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise self._timeout_error_locked()
                self._cond.wait(remaining)

    def take_or_listen(self, wake: Callable[[], None]) -> S | None:
        """A live idle session now, or None after registering ``wake`` for the next change."""
        with self._cond:
            session = self._take_locked()
            if session is None:
                self._listeners.add(wake)
            return session

    def forget_listener(self, wake: Callable[[], None]) -> None:
        with self._cond:
            self._listeners.discard(wake)

    def release(self, session: S, *, interrupted: bool) -> None:
        """Take a session back: idle again (reuse mode, still healthy) or retired."""
        with self._cond:
            if session not in self._busy:
                return  # the pool was closed meanwhile and has closed the session already
            self._busy.discard(session)
            if not self.reset_between_uses and not interrupted and self._reusable(session):
                self._idle.append(session)
            else:
                self._retire_locked(session)
            self._notify_locked()

    def timeout_error(self) -> SessionClosedError:
        """The error for an acquire that waited ``acquire_timeout`` in vain."""
        with self._cond:
            return self._timeout_error_locked()

    def _timeout_error_locked(self) -> SessionClosedError:
        if self._closed:
            return SessionClosedError("the pool is closed; create a new one")
        status = self._status_locked()
        why = ""
        if status.last_start_error is not None:
            why = f"; the last session start failed: {status.last_start_error}"
        return PoolTimeout(
            f"no session of the pool became free within acquire_timeout="
            f"{self.acquire_timeout:g} s ({status.busy} busy, {status.starting} starting, "
            f"{status.dead} failed){why}; use a larger pool or a longer acquire_timeout")

    def _take_locked(self) -> S | None:
        if self._closed:
            raise SessionClosedError("the pool is closed; create a new one")
        while self._idle:
            session = self._idle.popleft()
            if session.is_alive():
                self._busy.add(session)
                return session
            self._retire_locked(session)  # died while idle: replaced, never handed out
        if self._cannot_start_locked():
            raise SandboxUnavailableError(
                f"no session of the pool could start: {self._last_error}") from self._last_error
        return None

    def _cannot_start_locked(self) -> bool:
        """True when no session will become free: starts fail and none is in progress."""
        if self._failures < _FAILURES_BEFORE_GIVING_UP or self._dead == 0:
            return False
        if self._in_flight or self._to_start:
            return False
        return self.reset_between_uses or not self._busy

    def _reusable(self, session: S) -> bool:
        if not session.is_alive():
            return False
        limit = self.config.max_executions
        return limit is None or session.executions < limit

    def _retire_locked(self, session: S) -> None:
        """Close ``session`` in the background and start a replacement for its slot."""
        self._retiring.append(session)
        if not self._closed:
            self._to_start += 1
        self._cond.notify_all()

    # -- status ---------------------------------------------------------------------------

    def status(self) -> PoolStatus:
        with self._cond:
            for session in [s for s in self._idle if not s.is_alive()]:
                self._idle.remove(session)
                self._retire_locked(session)
            return self._status_locked()

    def _status_locked(self) -> PoolStatus:
        if self._closed:
            return PoolStatus(total=0, idle=0, busy=0, starting=0, dead=0)
        error = None
        if self._failures and self._last_error is not None:
            error = str(self._last_error)
        return PoolStatus(total=self.size, idle=len(self._idle), busy=len(self._busy),
                          starting=self._to_start + self._in_flight, dead=self._dead,
                          last_start_error=error)

    def describe(self) -> str:
        status = self.status()
        if self._closed:
            return "closed"
        return (f"size={status.total} idle={status.idle} busy={status.busy} "
                f"starting={status.starting} dead={status.dead} "
                f"sandbox={self.config.sandbox}")

    # -- background threads ---------------------------------------------------------------

    def _start_threads(self) -> None:
        # The threads live as long as the pool: bubblewrap's --die-with-parent (a parent-death
        # signal) fires when the *thread* that started a child ends, not the process.
        for number in range(self._thread_count):
            thread = threading.Thread(target=self._serve, daemon=True,
                                      name=f"securepy-pool-{number}")
            self._threads.append(thread)
            thread.start()

    def _serve(self) -> None:
        """A background thread: close retired sessions and fill slots until the pool closes."""
        while True:
            with self._cond:
                job = self._next_job_locked()
                if job == "exit":
                    return
            if isinstance(job, str):
                self._fill_one_slot()
            else:
                self._close_quietly(job)

    def _next_job_locked(self) -> S | typing.Literal["start", "exit"]:
        while True:
            if self._retiring:
                return self._retiring.pop()
            if self._closed:
                return "exit"
            if self._to_start:
                self._to_start -= 1
                self._in_flight += 1
                return "start"
            self._cond.wait()

    def _close_quietly(self, session: S) -> None:
        try:
            self._close_session(session)
        except Exception:  # closing a retired session must not stop the pool
            logger.exception("session pool: closing a session failed")

    def _fill_one_slot(self) -> None:
        try:
            child = start_child(self.config)
            session = self._wrap(self.config, child)
        except Exception as exc:  # any failed start is retried, and reported
            self._wait_before_retry(exc)
            return
        with self._cond:
            self._in_flight -= 1
            self._failures = 0
            self._last_error = None
            if self._closed:
                self._retiring.append(session)
            else:
                self._idle.append(session)
            self._notify_locked()

    def _wait_before_retry(self, exc: Exception) -> None:
        with self._cond:
            self._in_flight -= 1
            self._dead += 1
            self._failures += 1
            self._last_error = exc
            delay = min(_FIRST_RETRY_DELAY * 2 ** (self._failures - 1), _MAX_RETRY_DELAY)
            logger.warning("session pool: a session failed to start (%s); retrying in %.1f s",
                           exc, delay)
            self._notify_locked()
            self._cond.wait_for(lambda: self._closed, timeout=delay)
            self._dead -= 1
            if not self._closed:
                self._to_start += 1

    def _notify_locked(self) -> None:
        self._cond.notify_all()
        for wake in self._listeners:
            wake()

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close every session, idle or busy, and wait for the background threads to end."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._to_start = 0
                self._retiring.extend(self._idle)
                self._retiring.extend(self._busy)
                self._idle.clear()
                self._busy.clear()
                self._notify_locked()
            threads = list(self._threads)
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join()
        # A start that was in flight when close began hands its session to "retiring" once it
        # returns; the thread that started it closes it before it ends, so after the joins
        # nothing is left. Close here whatever a thread could not (close() from a pool thread).
        with self._cond:
            leftovers, self._retiring = self._retiring, []
        for session in leftovers:
            self._close_quietly(session)
        if self._template is not None:
            self._template.close()
