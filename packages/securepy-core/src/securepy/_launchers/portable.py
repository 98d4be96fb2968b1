"""``sandbox=False`` where a child inherits no socket and no signal but Ctrl+C (Windows).

The POSIX launchers hand the worker one end of a socketpair by fd number and stop it by
process group. Here the worker connects instead: this launcher listens on a loopback port,
starts the worker with stdin a pipe, and writes ``<host> <port> <token>`` to it. The first
connection that sends the token is the worker's; any other local process that connects is
turned away. Stdin then stays open as the host's second line to the worker (an interrupt is a
byte on it, see ``_worker/connect_back.py``), and closing it ends the worker if the host dies.

Limits: the host's timeout is enforced (it kills the worker and every process the code
started); on Windows a job object (``windows_job.py``) bounds memory, CPU time and processes
and ends the whole tree with the session. Windows has no rlimits, so file size and open files
are not bounded. The code runs as the host user, with no isolation.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping

from .._worker.connect_back import INTERRUPT
from ..errors import SandboxUnavailableError
from .base import LaunchSpec, PopenChild, close_pipes, startup_error
from .procfs import read_process_usage
from .windows_job import WindowsJob, open_job

__all__ = ["ACCEPT_TIMEOUT", "PortableChild", "PortableLauncher"]

ACCEPT_TIMEOUT = 30.0  # seconds for the worker to start and connect
_TOKEN_BYTES = 32


class PortableLauncher:
    """Starts the worker as a plain child process that connects back to the host."""

    sandboxed = False
    inherits_socket = False  # start_child hands it no socket: the child connects (see above)

    def launch(self, spec: LaunchSpec) -> PortableChild:
        """Start the worker and wait until it has connected (its socket is ``.socket``)."""
        if spec.mounts:
            raise SandboxUnavailableError("mounts need the sandbox; this launcher has none")
        workdir = tempfile.mkdtemp(prefix="securepy-")
        try:
            with socket.create_server(("127.0.0.1", 0)) as listener:
                popen = _start(spec, workdir)
                # Before the worker hears where to connect: no code of the session runs
                # outside the job.
                job = open_job(spec.limits, popen) if os.name == "nt" else None
                try:
                    token = secrets.token_bytes(_TOKEN_BYTES)
                    host, port = listener.getsockname()[:2]
                    _tell(popen, f"{host} {port} {token.hex()}\n".encode("ascii"))
                    sock = _accept_worker(listener, token, popen)
                except BaseException:
                    _kill_tree(popen, job)
                    close_pipes(popen)
                    raise
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return PortableChild(popen, workdir, sock, job)


class PortableChild(PopenChild):
    """The worker process, the socket it connected, its stdin and its temporary directory."""

    sandboxed = False
    wall = "none"

    def __init__(self, popen: subprocess.Popen[bytes], workdir: str,
                 sock: socket.socket, job: WindowsJob | None = None) -> None:
        super().__init__(popen)
        self.socket = sock
        self._workdir: str | None = workdir
        self._job = job

    def interrupt(self) -> None:
        if self._popen.poll() is None:
            _tell(self._popen, INTERRUPT)

    def kill(self) -> None:
        if self._popen.returncode is None:
            _kill_tree(self._popen, self._job)
        elif self._job is not None:
            self._job.terminate()  # what the code started may outlive the worker
        close_pipes(self._popen)
        self.socket.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def describe_exit(self, status: int) -> str | None:
        return None  # no rlimits here, so no exit names one

    def resource_usage(self) -> dict[str, float] | None:
        return read_process_usage(self._popen.pid)


def _start(spec: LaunchSpec, workdir: str) -> subprocess.Popen[bytes]:
    # The worker reads "connect" where the POSIX launchers put its socket's fd number.
    argv = (*spec.argv[:-1], "connect")
    if os.name == "nt":
        return subprocess.Popen(
            argv,
            env=_windows_environment(spec.env, workdir),
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Ctrl+C at the host's console is the host's, not the worker's; and no console
            # window opens for it.
            creationflags=(subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined, unused-ignore]
                           | subprocess.CREATE_NO_WINDOW),  # type: ignore[attr-defined, unused-ignore]
        )
    return subprocess.Popen(
        argv,
        env={**spec.env, "HOME": workdir, "TMPDIR": workdir},
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _windows_environment(env: Mapping[str, str], workdir: str) -> dict[str, str]:
    """The child's allowlisted environment, plus what Windows programs cannot start without
    (Winsock needs SYSTEMROOT) and its temporary directory."""
    kept = {name: os.environ[name] for name in ("SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT")
            if name in os.environ}
    return {**env, **kept, "PATH": os.environ.get("PATH", ""), "USERPROFILE": workdir,
            "HOME": workdir, "TEMP": workdir, "TMP": workdir}


def _tell(popen: subprocess.Popen[bytes], data: bytes) -> None:
    """Write to the worker's stdin; a worker that is gone (or a stdin closed by a kill on
    another thread) just does not hear it."""
    if popen.stdin is None:
        return
    with contextlib.suppress(OSError, ValueError):
        popen.stdin.write(data)
        popen.stdin.flush()


def _accept_worker(listener: socket.socket, token: bytes,
                   popen: subprocess.Popen[bytes]) -> socket.socket:
    """The first connection that sends ``token``. Connections are heard side by side, so
    other local processes that connect and stay silent cannot hold the worker up; a wrong
    token or too many at once are closed. Bounded by ACCEPT_TIMEOUT; ends early when the
    worker dies."""
    deadline = time.monotonic() + ACCEPT_TIMEOUT
    listener.setblocking(False)
    heard: dict[socket.socket, bytes] = {}
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if popen.poll() is not None or remaining <= 0:
                    raise SandboxUnavailableError(
                        f"the worker failed to start: {_why_not_connected(popen)[-2000:]}")
                # Short waits: a worker that died must not keep us here until the deadline.
                for key, _ in selector.select(min(remaining, 0.2)):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is listener:
                        _hear_new(listener, selector, heard)
                        continue
                    proven = _hear(sock, token, heard)
                    if proven is False:
                        continue
                    selector.unregister(sock)
                    del heard[sock]
                    if proven is None:
                        sock.close()
                        continue
                    sock.setblocking(True)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return sock
        finally:
            for sock in heard:
                sock.close()


_MAX_HEARD = 64  # connections heard at once; past that the oldest is dropped


def _hear_new(listener: socket.socket, selector: selectors.BaseSelector,
              heard: dict[socket.socket, bytes]) -> None:
    try:
        sock, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        return
    sock.setblocking(False)
    if len(heard) >= _MAX_HEARD:
        oldest = next(iter(heard))
        selector.unregister(oldest)
        del heard[oldest]
        oldest.close()
    heard[sock] = b""
    selector.register(sock, selectors.EVENT_READ)


def _hear(sock: socket.socket, token: bytes, heard: dict[socket.socket, bytes]) -> bool | None:
    """Read what ``sock`` sent: True once it sent ``token`` whole, False while it may still,
    None when it hung up or sent something else (the caller drops it)."""
    try:
        received = heard[sock] + sock.recv(len(token) - len(heard[sock]))
    except BlockingIOError:
        return False
    except OSError:
        return None
    if len(received) == len(token):
        return hmac.compare_digest(received, token) or None
    if received == heard[sock]:
        return None  # end of stream
    heard[sock] = received
    return False


def _why_not_connected(popen: subprocess.Popen[bytes]) -> str:
    if popen.returncode is None:
        return f"it did not connect within {ACCEPT_TIMEOUT:.0f} s"
    return startup_error(popen) or f"it exited with status {popen.returncode}"


def _kill_tree(popen: subprocess.Popen[bytes], job: WindowsJob | None) -> None:
    """Kill the worker and what the code started: on Windows the job object, or where there
    is none taskkill, which walks the tree by parent pid (so it runs first, while the worker
    is still its root); on POSIX the process group."""
    if job is not None:
        job.terminate()
    elif os.name == "nt":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(popen.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    elif hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        popen.kill()
    popen.wait()
