"""A session's child: start it, configure it, wait for it to be ready, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any

from ._channel import AsyncChannel, Channel, DeadlineExceeded, open_socketpair
from ._config import SessionConfig
from ._fontcache import SANDBOX_FONT_CACHE, font_cache
from ._interpreter import Interpreter, probe_interpreter
from ._launchers import ChildProcess, Launcher, LaunchSpec, select_launcher
from ._launchers.shared import shared_launcher
from ._limits import THREAD_STACK_BYTES, address_space_bytes
from ._worker import BOOTSTRAP, WORKER_DIR, protocol
from .errors import ProtocolError, SandboxUnavailableError

__all__ = ["START_TIMEOUT", "Child", "kill_quietly", "start_child", "start_child_in_thread"]

START_TIMEOUT = 30.0


class Child:
    """A started worker: its process and its socket."""

    def __init__(self, process: ChildProcess, sock: Any, max_frame_bytes: int,
                 started_ns: int = 0) -> None:
        self.process = process
        self.sock = sock
        self.started_ns = started_ns  # wall clock when its launch began (for tracing)
        self.send_lock = threading.Lock()
        self.channel = Channel(sock, max_frame_bytes=max_frame_bytes)
        self._async_channel: AsyncChannel | None = None

    @property
    def async_channel(self) -> AsyncChannel:
        """The socket as an asyncio channel (made once: it switches the socket to
        non-blocking mode)."""
        if self._async_channel is None:
            self._async_channel = AsyncChannel(
                self.sock, max_frame_bytes=self.channel.max_frame_bytes)
        return self._async_channel

    def kill(self) -> None:
        try:
            self.process.kill()
        finally:
            self.sock.close()


def start_child(config: SessionConfig) -> Child:
    """Launch a worker, configure it and wait until it is ready.

    Raises:
        securepy.errors.SandboxUnavailableError: the child could not start.
    """
    started_ns = time.time_ns()
    launcher = config.launcher or select_launcher(sandbox=config.sandbox, wall=config.wall)
    interpreter = probe_interpreter(config.python)
    env = _child_environment()
    if config.launcher is None and config.sandbox and config.template:
        # A fork of the process's shared template: a few ms instead of a bubblewrap start.
        launcher = shared_launcher(interpreter, config.mounts, env, wall=config.wall) or launcher
    frame = protocol.encode_frame(
        _configure_message(config, interpreter, sandboxed=launcher.sandboxed,
                           pids_cgroup=getattr(launcher, "pids_cgroup", False)))
    if getattr(launcher, "inherits_socket", True):
        process, host_sock, unsent = _launch_with_socketpair(launcher, interpreter, config,
                                                             env, frame)
    else:  # the worker connects back (Windows: _launchers/portable.py)
        process = launcher.launch(_spec(interpreter, config, env, fd=-1))
        host_sock, unsent = process.socket, frame  # type: ignore[attr-defined]
    child = Child(process, host_sock, config.max_frame_bytes, started_ns)
    try:
        _handshake(child, unsent)
    except BaseException:
        child.kill()
        raise
    return child


def _launch_with_socketpair(launcher: Launcher, interpreter: Interpreter,
                            config: SessionConfig, env: dict[str, str],
                            frame: bytes) -> tuple[ChildProcess, socket.socket, bytes]:
    """Launch a worker that inherits one end of a socketpair; return it, the host's end and
    what of ``frame`` is still to send."""
    host_sock, child_sock = open_socketpair()
    try:
        # Sent before the launch: the socket holds it until the worker reads it, so a worker
        # that starts fast (a fork of a template) finds it waiting.
        unsent = _send_what_fits(host_sock, frame)
        process = launcher.launch(_spec(interpreter, config, env, fd=child_sock.fileno()))
    except BaseException:
        host_sock.close()
        raise
    finally:
        child_sock.close()
    return process, host_sock, unsent


def _spec(interpreter: Interpreter, config: SessionConfig, env: dict[str, str], *,
          fd: int) -> LaunchSpec:
    return LaunchSpec(
        interpreter=interpreter,
        argv=(interpreter.executable, "-I", "-S", "-c", BOOTSTRAP, WORKER_DIR, str(fd)),
        child_fd=fd,
        limits=config.limits,
        env=env,
        mounts=config.mounts,
    )


def _child_environment() -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "PYTHONUNBUFFERED": "1",
        "OPENBLAS_NUM_THREADS": "1",
        # glibc reserves 64 MiB of address space per thread's malloc arena (up to 8 per CPU),
        # which RLIMIT_AS counts: two arenas serve Python (it holds the GIL) as well.
        "MALLOC_ARENA_MAX": "2",
    }


def _configure_message(config: SessionConfig, interpreter: Interpreter, *,
                       sandboxed: bool, pids_cgroup: bool = False) -> dict[str, Any]:
    message = {
        "kind": "configure",
        "version": protocol.PROTOCOL_VERSION,
        "tools": [tool.to_wire() for tool in config.tools.values()],
        "limits": config.limits.to_wire(),
        "path": list(interpreter.path),
        # RLIMIT_NPROC counts every process of the uid, other sandboxes' too: only where no
        # pids cgroup bounds the session itself.
        "nproc": sandboxed and not pids_cgroup,
        "address_space": address_space_bytes(config.limits),
        "thread_stack": THREAD_STACK_BYTES,
        "preload": list(config.preload),
        "max_frame_bytes": config.max_frame_bytes,
    }
    cache = font_cache(interpreter)
    if cache is not None:  # the walls bind it at SANDBOX_FONT_CACHE
        message["font_cache"] = SANDBOX_FONT_CACHE if sandboxed else cache
    return message


def _send_what_fits(sock: socket.socket, frame: bytes) -> bytes:
    """Send as much of ``frame`` as the socket's buffer takes now, without waiting; return
    the rest (nothing reads the socket yet)."""
    try:
        return frame[sock.send(frame, socket.MSG_DONTWAIT):]
    except BlockingIOError:
        return frame


def _handshake(child: Child, unsent: bytes) -> None:
    channel = child.channel
    try:
        with contextlib.suppress(ProtocolError):
            # A child that failed to start may have said why before it left: read that
            # rather than report the broken pipe.
            if unsent:
                channel.send_frame(unsent, time.monotonic() + START_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        ready = channel.receive(deadline)
        printed = ""
        while ready["kind"] == "output" and len(printed) < 4000:
            # A worker that failed while starting prints its traceback before it dies.
            printed += str(ready.get("text", ""))
            try:
                ready = channel.receive(deadline)
            except (ProtocolError, DeadlineExceeded):
                ready = {"kind": "died"}
    except (ProtocolError, DeadlineExceeded) as exc:
        detail = child.process.read_startup_error() or str(exc) or "no output"
        raise SandboxUnavailableError(
            f"the {'sandboxed ' if child.process.sandboxed else ''}worker failed to start: "
            f"{_name_exhaustion(detail)}{detail[-2000:]}"
        ) from None
    if ready["kind"] == "error":
        detail = f"{ready['type'][:100]}: {ready['message'][:2000]}"
        raise SandboxUnavailableError(
            f"the worker failed to start: {_name_exhaustion(detail)}{detail}")
    if ready["kind"] != "ready" and printed:
        raise SandboxUnavailableError(
            f"the worker failed to start: {_name_exhaustion(printed)}{printed[-2000:]}")
    if ready["kind"] != "ready" or ready.get("version") != protocol.PROTOCOL_VERSION:
        raise SandboxUnavailableError(
            f"the worker speaks protocol {ready.get('version')!r}, the host "
            f"{protocol.PROTOCOL_VERSION}; reinstall securepy"
        )


def _name_exhaustion(text: str) -> str:
    """A sentence naming the resource behind a start that failed for lack of one, or ""."""
    if "can't start new thread" in text or "Resource temporarily unavailable" in text:
        return ("it could not start a thread or process: the session's processes limit, or "
                "a per-uid budget of the host (as root each session has a uid of its own; as "
                "another user all sessions share that user's RLIMIT_NPROC), is exhausted; "
                "close sessions or raise the limit. ")
    if "MemoryError" in text or "Cannot allocate memory" in text:
        return "it ran out of memory: raise Limits.memory_bytes or free memory on the host. "
    return ""


def kill_quietly(child: Child | None) -> None:
    """Finalizer: no child outlives its session object or the host process."""
    if child is not None:
        with contextlib.suppress(Exception):  # finalizers must not raise
            child.kill()


async def start_child_in_thread(config: SessionConfig) -> Child:
    """start_child off the event loop. If the awaiting task is cancelled, the thread still
    finishes the start; the child it makes is then stopped, not leaked."""
    future = asyncio.get_running_loop().run_in_executor(None, start_child, config)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_kill_started_child)
        raise


def _kill_started_child(future: asyncio.Future[Child]) -> None:
    if not future.cancelled() and future.exception() is None:
        kill_quietly(future.result())
