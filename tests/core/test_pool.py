"""SessionPool and AsyncSessionPool, each scenario run through both twins where it applies."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import securepy
from securepy import errors
from securepy._launchers.base import ChildProcess, LaunchSpec
from securepy._launchers.unsandboxed import UnsandboxedLauncher
from securepy._pool import PoolStatus

from ..conftest import wait_until

SANDBOX_MODES = [
    pytest.param(False, id="unsandboxed"),
    pytest.param(True, id="sandboxed", marks=pytest.mark.sandbox),
]


def lookup(key: str) -> str:
    """Look a key up on the host."""
    return key.upper()


class TwinPool:
    """Drives a SessionPool or an AsyncSessionPool through one blocking surface."""

    def __init__(self, kind: str, size: int, **options: Any) -> None:
        self.kind = kind
        self._runner = asyncio.Runner() if kind == "async" else None
        pool_type = securepy.AsyncSessionPool if kind == "async" else securepy.SessionPool
        self.inner: Any = pool_type(size, **options)

    def _run(self, awaitable: Any) -> Any:
        assert self._runner is not None
        return self._runner.run(awaitable)

    def execute(self, code: str, **kwargs: Any) -> securepy.Execution:
        if self._runner is not None:
            return self._run(self.inner.execute(code, **kwargs))  # type: ignore[no-any-return]
        return self.inner.execute(code, **kwargs)  # type: ignore[no-any-return]

    def in_one_checkout(self, *codes: str) -> list[Any]:
        """Run ``codes`` on one checked-out session; the values."""
        if self._runner is not None:
            async def run() -> list[Any]:
                async with self.inner.session() as session:
                    return [(await session.execute(code)).value for code in codes]
            return self._run(run())  # type: ignore[no-any-return]
        with self.inner.session() as session:
            return [session.execute(code).value for code in codes]

    @contextlib.contextmanager
    def held(self) -> Iterator[Any]:
        """Keep one session checked out for the duration of the block."""
        if self._runner is not None:
            stack = contextlib.AsyncExitStack()
            session = self._run(stack.enter_async_context(self.inner.session()))
            try:
                yield session
            finally:
                self._run(stack.aclose())
        else:
            with self.inner.session() as session:
                yield session

    def session_pid(self, session: Any) -> int:
        code = "import os\nos.getpid()"
        if self._runner is not None:
            return self._run(session.execute(code)).value  # type: ignore[no-any-return]
        return session.execute(code).value  # type: ignore[no-any-return]

    def status(self) -> PoolStatus:
        return self.inner.status()  # type: ignore[no-any-return]

    def wait_until_warm(self) -> None:
        wait_until(lambda: self.status().idle == self.status().total, timeout=30)

    def close(self) -> None:
        if self._runner is not None:
            self._run(self.inner.close())
        else:
            self.inner.close()

    def dispose(self) -> None:
        self.close()
        if self._runner is not None:
            self._runner.close()


@pytest.fixture(params=["sync", "async"])
def twin_pool(request: pytest.FixtureRequest) -> Iterator[Callable[..., TwinPool]]:
    """Factory for a pool of either twin (sandbox=False unless given); closed after."""
    made: list[TwinPool] = []

    def make(size: int = 2, **options: Any) -> TwinPool:
        options.setdefault("sandbox", False)
        pool = TwinPool(request.param, size, **options)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.dispose()
    assert not _pool_threads(), "the pool left threads running"


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("securepy-pool-")]


def _pid_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- basics -----------------------------------------------------------------------------------


def test_execute_and_status(twin_pool: Any) -> None:
    pool = twin_pool(2)
    assert pool.execute("6 * 7").value == 42
    pool.wait_until_warm()
    assert pool.status() == PoolStatus(total=2, idle=2, busy=0, starting=0, dead=0)


def test_a_checkout_keeps_state_across_its_executes(twin_pool: Any) -> None:
    pool = twin_pool(1)
    assert pool.in_one_checkout("x = 20", "x + 22") == [None, 42]


def test_each_checkout_gets_a_fresh_session_by_default(twin_pool: Any) -> None:
    pool = twin_pool(1)
    pool.in_one_checkout("secret = 'from the last user'")
    with pytest.raises(errors.ExecutionError, match=r"^NameError: name 'secret' is not defined$"):
        pool.execute("secret")
    first = pool.in_one_checkout("import os\nos.getpid()")[0]
    second = pool.in_one_checkout("import os\nos.getpid()")[0]
    assert first != second


def test_reset_between_uses_false_keeps_the_session(twin_pool: Any) -> None:
    pool = twin_pool(1, reset_between_uses=False)
    pool.in_one_checkout("kept = 1")
    assert pool.execute("kept").value == 1
    assert pool.in_one_checkout("import os\nos.getpid()") == pool.in_one_checkout(
        "import os\nos.getpid()")


def test_status_while_checked_out_and_after(twin_pool: Any) -> None:
    pool = twin_pool(2)
    pool.wait_until_warm()
    with pool.held():
        assert pool.status() == PoolStatus(total=2, idle=1, busy=1, starting=0, dead=0)
    status = pool.status()
    # The returned session is retired and its slot restarts in the background.
    assert (status.busy, status.idle + status.starting) == (0, 2)
    pool.wait_until_warm()


def test_tools_are_shared_by_every_session(twin_pool: Any) -> None:
    pool = twin_pool(2, tools=[lookup])
    assert list(pool.inner.tools) == ["lookup"]
    assert pool.execute("lookup('abc')").value == "ABC"


def test_an_error_in_the_code_is_raised_and_the_pool_goes_on(twin_pool: Any) -> None:
    pool = twin_pool(1)
    with pytest.raises(errors.ExecutionError, match=r"^ZeroDivisionError: division by zero$"):
        pool.execute("1 / 0")
    assert pool.execute("2 + 2").value == 4


# -- waiting, dead sessions, failing starts ---------------------------------------------------


def test_acquire_timeout_raises_session_closed_error(twin_pool: Any) -> None:
    pool = twin_pool(1, acquire_timeout=0.2)
    with pool.held():
        started = time.monotonic()
        with pytest.raises(errors.SessionClosedError,
                           match=r"^no session of the pool became free within acquire_timeout="
                                 r"0\.2 s \(1 busy, 0 starting, 0 failed\); use a larger pool or "
                                 r"a longer acquire_timeout$"):
            pool.execute("1")
        assert time.monotonic() - started < 5
    assert pool.execute("1").value == 1


def test_a_waiter_gets_the_session_when_it_comes_back() -> None:
    results: list[Any] = []
    with securepy.SessionPool(1, sandbox=False, reset_between_uses=False) as pool:
        with pool.session() as session:
            waiter = threading.Thread(target=lambda: results.append(pool.execute("3").value))
            waiter.start()
            session.execute("1")
            assert results == []
        waiter.join(30)
    assert results == [3]


async def test_async_waiting_never_blocks_the_loop() -> None:
    async with securepy.AsyncSessionPool(1, sandbox=False, reset_between_uses=False) as pool:
        async with pool.session() as session:
            waiter = asyncio.ensure_future(pool.execute("'second'"))
            ticks = 0
            for _ in range(20):
                await asyncio.sleep(0.001)
                ticks += 1
            assert not waiter.done()
            assert ticks == 20
            assert (await session.execute("'first'")).value == "first"
        assert (await waiter).value == "second"


async def test_async_acquire_timeout_and_cancel_leave_no_waiter() -> None:
    # 0.5 s: the waiter below must still be waiting when it is cancelled, on a loaded machine.
    async with securepy.AsyncSessionPool(1, sandbox=False, acquire_timeout=0.5,
                                         reset_between_uses=False) as pool:
        assert (await pool.execute("0")).value == 0  # the one session is up
        async with pool.session():
            with pytest.raises(errors.SessionClosedError, match=r"^no session of the pool"):
                await pool.execute("1")
            waiter = asyncio.ensure_future(pool.execute("1"))
            await asyncio.sleep(0.01)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        assert pool._core._listeners == set()
        assert (await pool.execute("5")).value == 5


def test_a_session_that_died_while_idle_is_never_handed_out(twin_pool: Any) -> None:
    pool = twin_pool(2, reset_between_uses=False)
    pool.wait_until_warm()
    idle = list(pool.inner._core._idle)
    for session in idle:
        os.kill(session._child.process.pid, signal.SIGKILL)
    wait_until(lambda: all(not session.is_alive() for session in idle))
    assert pool.execute("'alive'").value == "alive"
    pool.wait_until_warm()
    assert all(session not in idle for session in pool.inner._core._idle)


def test_status_notices_dead_idle_sessions(twin_pool: Any) -> None:
    pool = twin_pool(1)
    pool.wait_until_warm()
    (session,) = pool.inner._core._idle
    os.kill(session._child.process.pid, signal.SIGKILL)
    wait_until(lambda: pool.status().idle == 0)
    pool.wait_until_warm()
    assert pool.execute("1").value == 1


def test_a_session_that_died_during_a_checkout_is_replaced(twin_pool: Any) -> None:
    pool = twin_pool(1, reset_between_uses=False)
    with pool.held() as session:
        pid = pool.session_pid(session)
        session.close() if pool.kind == "sync" else pool._run(session.close())
    assert pool.in_one_checkout("import os\nos.getpid()") != [pid]


class FlakyLauncher:
    """Refuses the first ``failures`` launches, then starts plain children."""

    sandboxed = False

    def __init__(self, failures: float) -> None:
        self.failures = failures
        self.attempts = 0
        self._lock = threading.Lock()

    def launch(self, spec: LaunchSpec) -> ChildProcess:
        with self._lock:
            self.attempts += 1
            if self.attempts <= self.failures:
                raise errors.SandboxUnavailableError(f"no luck (attempt {self.attempts})")
        return UnsandboxedLauncher().launch(spec)


def test_a_failed_start_is_retried_and_reported(twin_pool: Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    launcher = FlakyLauncher(failures=2)
    pool = twin_pool(1, launcher=launcher, acquire_timeout=30)
    assert pool.execute("'eventually'").value == "eventually"
    assert launcher.attempts >= 3  # a 4th may already be the replacement for the next checkout
    failures = [r.getMessage() for r in caplog.records if "failed to start" in r.getMessage()]
    assert failures == [
        "session pool: a session failed to start (no luck (attempt 1)); retrying in 0.1 s",
        "session pool: a session failed to start (no luck (attempt 2)); retrying in 0.2 s",
    ]
    assert pool.status().last_start_error is None


def test_when_no_session_can_start_the_error_says_why(twin_pool: Any) -> None:
    launcher = FlakyLauncher(failures=float("inf"))
    pool = twin_pool(2, launcher=launcher, acquire_timeout=30)
    wait_until(lambda: pool.status().dead == 2)
    status = pool.status()
    assert status.last_start_error is not None
    assert status.last_start_error.startswith("no luck (attempt ")
    started = time.monotonic()
    with pytest.raises(errors.SandboxUnavailableError,
                       match=r"^no session of the pool could start: no luck \(attempt \d+\)$"):
        pool.execute("1")
    assert time.monotonic() - started < 5  # not after acquire_timeout
    attempts = launcher.attempts
    time.sleep(0.3)
    assert launcher.attempts - attempts <= 4  # retries back off instead of spinning


# -- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pool_type", [securepy.SessionPool, securepy.AsyncSessionPool],
                         ids=["sync", "async"])
def test_bad_options_fail_at_construction(pool_type: Any) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'timout'"):
        pool_type(2, sandbox=False, timout=3)
    with pytest.raises(ValueError, match=r"^size must be between 1 and 100, got 0 \(a pool "
                                         r"holds one host's sessions; spread more over "
                                         r"several hosts\)$"):
        pool_type(0, sandbox=False)
    with pytest.raises(ValueError, match=r"^size must be between 1 and 100, got 101 "):
        pool_type(101, sandbox=False)
    with pytest.raises(TypeError, match=r"^size must be an integer, not bool$"):
        pool_type(True, sandbox=False)
    with pytest.raises(ValueError, match=r"^timeout must be a positive number of seconds or "
                                         r"None, got -1$"):
        pool_type(1, sandbox=False, acquire_timeout=-1)
    with pytest.raises(TypeError, match=r"^reset_between_uses must be True or False$"):
        pool_type(1, sandbox=False, reset_between_uses="yes")
    assert not _pool_threads()


def test_session_options_reach_every_session(twin_pool: Any) -> None:
    pool = twin_pool(1, timeout=0.3, max_code_length=50)
    with pytest.raises(errors.PolicyError, match=r"over max_code_length=50$"):
        pool.execute("x = 1  # " + "a" * 60)
    with pytest.raises(errors.ExecutionTimeout):
        pool.execute("while True: pass")


def test_reuse_mode_replaces_a_session_at_max_executions(twin_pool: Any) -> None:
    pool = twin_pool(1, reset_between_uses=False, max_executions=2)
    first = pool.in_one_checkout("import os", "os.getpid()")[1]
    second = pool.in_one_checkout("import os", "os.getpid()")[1]
    assert first != second


def test_an_interrupted_checkout_is_not_reused() -> None:
    with securepy.SessionPool(1, sandbox=False, reset_between_uses=False) as pool:
        with pytest.raises(KeyboardInterrupt), pool.session() as session:
            session.execute("state = 1")
            raise KeyboardInterrupt
        with pytest.raises(errors.ExecutionError, match=r"^NameError"):
            pool.execute("state")


# -- closing ----------------------------------------------------------------------------------


def test_close_is_idempotent_and_leaves_nothing(twin_pool: Any) -> None:
    pool = twin_pool(3)
    pool.wait_until_warm()
    pids = [s._child.process.pid for s in pool.inner._core._idle]
    pool.close()
    pool.close()
    assert all(_pid_is_gone(pid) for pid in pids)
    assert not _pool_threads()
    assert pool.status() == PoolStatus(total=0, idle=0, busy=0, starting=0, dead=0)
    with pytest.raises(errors.SessionClosedError, match=r"^the pool is closed; create a new one$"):
        pool.execute("1")


def test_close_right_after_construction_while_sessions_start(twin_pool: Any) -> None:
    pool = twin_pool(4)
    pool.close()
    assert not _pool_threads()


def test_close_also_closes_checked_out_sessions() -> None:
    pool = securepy.SessionPool(1, sandbox=False)
    with pool.session() as session:
        pool.close()
        assert not session.is_alive()
        with pytest.raises(errors.SessionClosedError):
            session.execute("1")
    assert not _pool_threads()


async def test_async_close_wakes_waiters() -> None:
    pool = securepy.AsyncSessionPool(1, sandbox=False)
    async with pool.session():
        waiter = asyncio.ensure_future(pool.execute("1"))
        await asyncio.sleep(0.01)
        await pool.close()
        with pytest.raises(errors.SessionClosedError, match=r"^the pool is closed"):
            await waiter


def _abandoned_pool_pids() -> list[int]:
    pool = securepy.SessionPool(2, sandbox=False)
    wait_until(lambda: pool.status().idle == 2)
    return [s._child.process.pid for s in pool._core._idle]


def test_a_garbage_collected_pool_stops_its_children() -> None:
    pids = _abandoned_pool_pids()
    gc.collect()
    wait_until(lambda: all(_pid_is_gone(pid) for pid in pids))
    wait_until(lambda: not _pool_threads())


# -- threads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "reuse"])
def test_many_threads_share_a_pool(reset: bool) -> None:
    errors_seen: list[BaseException] = []

    def work(pool: securepy.SessionPool, number: int) -> None:
        try:
            for round_ in range(4):
                with pool.session() as session:
                    session.execute(f"mine = {number * 100 + round_}")
                    assert session.execute("mine").value == number * 100 + round_
        except BaseException as exc:  # reported by the main thread
            errors_seen.append(exc)

    with securepy.SessionPool(2, sandbox=False, reset_between_uses=reset) as pool:
        threads = [threading.Thread(target=work, args=(pool, n)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors_seen == []
        status = pool.status()
        assert (status.total, status.busy) == (2, 0)


async def test_async_pool_runs_sessions_concurrently() -> None:
    async with securepy.AsyncSessionPool(3, sandbox=False) as pool:
        results = await asyncio.gather(*(pool.execute(f"{n} * 2") for n in range(9)))
        assert [r.value for r in results] == [n * 2 for n in range(9)]


# -- the real sandbox -------------------------------------------------------------------------


@pytest.mark.sandbox
def test_sandboxed_pool_sessions_outlive_the_threads_that_used_them() -> None:
    # A pool thread starts each child; bubblewrap's --die-with-parent follows the starting
    # thread, so the pool must keep its threads for as long as their children live.
    with securepy.SessionPool(2, reset_between_uses=False, timeout=30) as pool:
        wait_until(lambda: pool.status().idle == 2, timeout=30)
        time.sleep(0.3)
        assert pool.status().idle == 2
        assert pool.execute("1 + 1").value == 2


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
def test_pool_in_both_modes(twin_pool: Any, sandbox: bool) -> None:
    pool = twin_pool(2, sandbox=sandbox, tools=[lookup])
    assert pool.in_one_checkout("v = lookup('x')", "v") == [None, "X"]
    with pytest.raises(errors.ExecutionError, match=r"^NameError"):
        pool.execute("v")
