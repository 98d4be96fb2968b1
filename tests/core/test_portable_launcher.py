"""The launcher for platforms whose children inherit no socket (Windows, ``sandbox=False``),
run here on Linux: the worker connects back over loopback and proves itself with a token;
stdin carries interrupts and the host's end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import securepy
from securepy._launchers import select_launcher
from securepy._launchers.portable import PortableChild, PortableLauncher, _accept_worker


@securepy.tool
def double(x: int) -> int:
    """Twice x."""
    return 2 * x


def _session(**options: object) -> securepy.Session:
    return securepy.Session(tools=[double], sandbox=False, launcher=PortableLauncher(),
                            **options)  # type: ignore[arg-type]


def test_a_session_runs_code_calls_tools_and_keeps_state() -> None:
    with _session() as session:
        result = session.execute("import os\ny = double(21)\nprint('hi')\nos.system('echo sub')")
        assert result.stdout == "hi\nsub\n"
        assert session.execute("y").value == 42
        assert session.wall == "none"


def test_interrupt_goes_through_stdin_and_keeps_state() -> None:
    with _session() as session:
        session.execute("y = 5")
        threading.Timer(0.3, session.interrupt).start()
        with pytest.raises(securepy.ExecutionError, match="KeyboardInterrupt"):
            session.execute("import time\nwhile True: time.sleep(0.01)")
        with pytest.raises(securepy.ExecutionTimeout):
            session.execute("while True: pass", timeout=0.5)
        assert session.execute("y").value == 5


def test_the_worker_ends_when_the_host_closes_its_stdin() -> None:
    with _session() as session:
        session.execute("1")
        child = session._child
        assert child is not None and isinstance(child.process, PortableChild)
        popen = child.process._popen
        assert popen.stdin is not None
        popen.stdin.close()  # as when the host process dies
        assert popen.wait(timeout=10) == 0


def test_a_worker_that_dies_before_connecting_is_reported_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(securepy.SandboxUnavailableError,
                       match=r"^the worker failed to start: .*no such interpreter module"):
        securepy.Session(sandbox=False, launcher=_BrokenLauncher())
    assert time.monotonic() - started < 10


class _BrokenLauncher(PortableLauncher):
    def launch(self, spec):  # type: ignore[no-untyped-def]
        import dataclasses

        argv = (sys.executable, "-c", "import sys; sys.exit('no such interpreter module')",
                "x", "y")
        return super().launch(dataclasses.replace(spec, argv=argv))


def test_other_local_connections_cannot_take_or_hold_up_the_worker_s_place() -> None:
    token = bytes(range(32))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = listener.getsockname()
        popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 stderr=subprocess.PIPE)
        silent = [socket.create_connection(address) for _ in range(70)]  # over the cap too
        wrong = socket.create_connection(address)
        wrong.sendall(b"\xff" * 32)
        short = socket.create_connection(address)
        short.sendall(token[:16])
        short.shutdown(socket.SHUT_WR)
        worker = socket.create_connection(address)
        worker.sendall(token[:10])
        threading.Timer(0.3, worker.sendall, (token[10:],)).start()
        try:
            started = time.monotonic()
            accepted = _accept_worker(listener, token, popen)
            assert time.monotonic() - started < 5
            accepted.sendall(b"ok")
            assert worker.recv(2) == b"ok"  # control: the one with the token got through
            wrong.settimeout(5)
            assert wrong.recv(1) == b""  # turned away
            accepted.close()
        finally:
            popen.kill()
            popen.wait()
            popen.stderr.close()  # type: ignore[union-attr]
            for sock in [*silent, wrong, short, worker]:
                sock.close()


def test_windows_and_hosts_without_unix_sockets_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    assert isinstance(select_launcher(sandbox=False), PortableLauncher)
    monkeypatch.setattr(sys, "platform", "linux")
    assert not isinstance(select_launcher(sandbox=False), PortableLauncher)  # control
    monkeypatch.delattr(socket, "AF_UNIX")
    assert isinstance(select_launcher(sandbox=False), PortableLauncher)


_HOST = """
import sys, threading, securepy
from securepy._launchers.portable import PortableLauncher
from securepy._launchers.unsandboxed import UnsandboxedLauncher
launcher = PortableLauncher() if sys.argv[1] == "portable" else UnsandboxedLauncher()
session = securepy.Session(sandbox=False, launcher=launcher)
print(session.execute("import os; os.getpid()").value, flush=True)
session.execute("while True: pass", timeout=600)
"""


@pytest.mark.parametrize("launcher", ["portable", "unsandboxed"])
def test_a_plain_worker_ends_when_its_host_is_killed_while_its_code_runs(launcher: str) -> None:
    host = subprocess.Popen([sys.executable, "-c", _HOST, launcher], stdout=subprocess.PIPE,
                            text=True)
    worker = 0
    try:
        assert host.stdout is not None
        worker = int(host.stdout.readline())
        time.sleep(0.3)  # the code is running now
        assert _alive(worker)  # control: it outlives nothing yet
        host.kill()
        host.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker)
    finally:
        host.kill()
        host.wait()
        host.stdout.close()  # type: ignore[union-attr]
        if worker and _alive(worker):
            os.kill(worker, signal.SIGKILL)  # the test failed: leave no spinning worker behind


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_job_object_carries_the_limits_windows_can_enforce() -> None:
    import ctypes

    from securepy._launchers.windows_job import JobLimits, job_limits

    # The sizes Windows (64-bit) expects: a wrong layout would set the wrong limits there.
    assert ctypes.sizeof(JobLimits) == 144
    info = job_limits(securepy.Limits(memory_bytes=256 << 20, cpu_seconds=1.5, processes=8))
    basic = info.BasicLimitInformation
    assert basic.LimitFlags == 0x2000 | 0x0200 | 0x0002 | 0x0008
    assert info.JobMemoryLimit == 256 << 20
    assert basic.PerProcessUserTimeLimit == 15_000_000
    assert basic.ActiveProcessLimit == 9
    unlimited = job_limits(securepy.Limits(memory_bytes=None, cpu_seconds=None, processes=None))
    assert unlimited.BasicLimitInformation.LimitFlags == 0x2000  # still ends the whole tree


class _Kernel32:
    def __init__(self, calls: list[tuple[object, ...]]) -> None:
        self._calls = calls

    def __getattr__(self, name: str) -> object:
        calls = self._calls

        class _Function:
            def __call__(self, *args: object) -> int:
                calls.append((name, *args))
                return 7

        function = _Function()
        self.__dict__[name] = function
        return function


def test_the_job_is_opened_around_the_worker_and_ends_its_tree(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import ctypes
    import types

    from securepy._launchers.windows_job import open_job

    worker = types.SimpleNamespace(_handle=42)
    assert open_job(securepy.Limits(), worker) is None  # type: ignore[arg-type]
    assert "limits are not enforced" in caplog.text  # control: no Windows here, said plainly
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(ctypes, "WinDLL", lambda *args, **kwargs: _Kernel32(calls),
                        raising=False)
    job = open_job(securepy.Limits(), worker)  # type: ignore[arg-type]
    assert job is not None
    assert [call[0] for call in calls] == ["CreateJobObjectW", "SetInformationJobObject",
                                           "AssignProcessToJobObject"]
    assert calls[1][1:3] == (7, 9) and calls[1][4] == 144
    assert calls[2][1:] == (7, 42)
    job.terminate()
    job.terminate()  # idempotent
    assert calls[3:] == [("TerminateJobObject", 7, 1), ("CloseHandle", 7)]
