"""The shared template: sessions outside pools forked from one template per configuration.

A pool forks its sessions from a template of its own (:mod:`.template`). A plain ``Session()``
(and ``AsyncSession``, ``execute_python``, the adapters' sessions) would otherwise pay a whole
bubblewrap start, about three times a bare interpreter's start. Instead, where a template can
run (``template_problem`` in :mod:`.template` says so), such sessions fork from a template this
module starts on first use and keeps for the life of the process:

- one template per configuration a template fixes when it starts: the interpreter, the
  mounts (staged in the template's sandbox) and the environment; limits are per session.
  At most :data:`MAX_TEMPLATES` of them; a session whose configuration would need another
  starts with bubblewrap, as it would without templates;
- restarted on the next session if it dies (the sessions forked from it die with it, and
  restart on their next execute like any session whose child was stopped);
- stopped by an ``atexit`` hook, or earlier by :func:`close_shared_templates`
  (``Session.close_shared_templates()``);
- seen through :func:`shared_templates` (``Session.shared_templates()``): the host pid of each
  template, the host file descriptors it holds and how many sessions forked from it still
  run, so leak checks can account for exactly these and nothing else.

Opt out per session with ``Session(template=False)``, or for the process with the environment
variable ``SECUREPY_SHARED_TEMPLATE=0``. ``wall="landlock"``, ``sandbox=False`` and an explicit
``launcher=`` never use it. What sessions of one template share (the str hash secret, the
address-space layout) is in ``_worker/template.py``'s docstring and docs/threat-model.md.

:class:`TemplateLauncher` does not expose its template's pid and fds, so they are found from
the launch that starts it: the pid is the child of ours the new session descends from (and runs
the worker in template mode), the fds are those new across that launch that are the template's
stderr pipe (the pipe its fd 2 is) and its control socket (the one new SOCK_SEQPACKET socket).
Anything ambiguous is left unaccounted, so a leak check reports it rather than miss a leak.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import socket
import threading
import weakref
from collections.abc import Mapping

from .._interpreter import Interpreter
from .._mounts import Mount
from .._worker import WORKER_DIR
from ..errors import SandboxUnavailableError
from . import template
from .base import ChildProcess, LaunchSpec

__all__ = [
    "ENV_SWITCH",
    "MAX_TEMPLATES",
    "SharedTemplateStatus",
    "close_shared_templates",
    "shared_launcher",
    "shared_templates",
]

logger = logging.getLogger("securepy")

ENV_SWITCH = "SECUREPY_SHARED_TEMPLATE"
# Each template is a sandboxed interpreter kept for the process's life (about 10-20 MiB):
# a few configurations earn one; sessions of any further one start with bubblewrap.
MAX_TEMPLATES = 4

_ON = ("", "1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SharedTemplateStatus:
    """One shared template, as :func:`shared_templates` sees it.

    Attributes:
        python: the interpreter its sessions run.
        mounts: the mounts its sessions get.
        pid: host pid of the template's bubblewrap (a child of this process); None while no
            template runs (not started yet, stopped, or died: the next session restarts it).
        fds: this process's file descriptors that belong to the template (its control socket
            and the pipe of its stderr).
        sessions: sessions forked from it that still run.
    """

    python: str
    mounts: tuple[Mount, ...]
    pid: int | None
    fds: tuple[int, ...]
    sessions: int


def shared_templates() -> tuple[SharedTemplateStatus, ...]:
    """Every shared template this process has, running or not (see the module docstring)."""
    with _lock:
        entries = list(_entries.values())
    return tuple(entry.status() for entry in entries)


def close_shared_templates() -> None:
    """Stop every shared template now, and with it every session forked from one (such a
    session restarts on its next execute, its state lost). A later session starts a new
    template. Idempotent; also runs at interpreter exit."""
    global _entries
    with _lock:
        entries, _entries = list(_entries.values()), {}
    for entry in entries:
        entry.close()


def shared_launcher(interpreter: Interpreter, mounts: tuple[Mount, ...],
                    env: Mapping[str, str], *, wall: str) -> _SharedTemplate | None:
    """The shared template for a sandboxed session of this configuration, or None when the
    session should start as it would without one (switched off, the Landlock wall, no template
    can run here, too many templates already, or this configuration's template failed to
    start).

    Raises:
        ValueError: ``SECUREPY_SHARED_TEMPLATE`` holds something other than on or off.
    """
    if wall == "landlock" or not _switched_on():
        return None
    try:
        problem = template.template_problem(interpreter)
    except SandboxUnavailableError:
        return None  # no bubblewrap here: the wall "auto" picks starts the session
    if problem is not None:
        return None
    key = (interpreter, mounts, tuple(sorted(env.items())))
    with _lock:
        entry = _entries.get(key)
        if entry is None:
            if len(_entries) >= MAX_TEMPLATES:
                logger.debug("securepy: %d shared templates already run; this session "
                             "starts with bubblewrap", MAX_TEMPLATES)
                return None
            entry = _entries[key] = _SharedTemplate(interpreter, mounts)
    return None if entry.failed else entry


def _switched_on() -> bool:
    value = os.environ.get(ENV_SWITCH, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{ENV_SWITCH}={os.environ[ENV_SWITCH]!r} is neither on nor off: set it "
                     f"to 0 to start every session with bubblewrap, or 1 (or unset it) to fork "
                     f"sessions from the shared template")


class _SharedTemplate:
    """One shared template: a :class:`TemplateLauncher` and what the host holds for it."""

    sandboxed = True

    def __init__(self, interpreter: Interpreter, mounts: tuple[Mount, ...]) -> None:
        self._interpreter = interpreter
        self._mounts = mounts
        self._launcher = template.TemplateLauncher()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._fds: tuple[int, ...] = ()
        self._children: weakref.WeakSet[ChildProcess] = weakref.WeakSet()
        self._closed = False
        self.failed: str | None = None

    @property
    def pids_cgroup(self) -> bool:
        """As the template launcher's (each session gets a pids cgroup where the host has
        them; a fallback to bubblewrap does too)."""
        return self._launcher.pids_cgroup

    def launch(self, spec: LaunchSpec) -> ChildProcess:
        """Fork a session from the template (starting it first if it is not running); where
        it cannot start, start the session with bubblewrap.

        Raises:
            securepy.errors.SandboxUnavailableError: the session cannot start.
        """
        with self._lock:
            child = None if self._closed else self._launch_from_template(spec)
            if child is not None:
                self._children.add(child)
                return child
        from .bubblewrap import BubblewrapLauncher

        # template_problem() found bubblewrap's wall standing, so "auto" would pick it too.
        return BubblewrapLauncher().launch(spec)

    def _launch_from_template(self, spec: LaunchSpec) -> ChildProcess | None:
        retried = False
        while True:
            # Taken before every launch (about 0.1 ms): the template launcher may replace a
            # template that died just now even when ours still looked alive.
            before = _Snapshot()
            starting = not self._running()
            try:
                child = self._launcher.launch(spec)
            except (SandboxUnavailableError, OSError) as exc:
                if starting:
                    self._account(before)
                    if self._pid is None:  # no template came up
                        if not retried:  # (a retry may have met the dead one once more)
                            self.failed = str(exc)
                            logger.info("securepy: the shared session template did not "
                                        "start (%s); sessions of this configuration start "
                                        "with bubblewrap", exc)
                        return None
                if self._running() or retried:
                    raise  # the template runs: this session's own failure
                retried = True  # it died under this launch: the next round starts a new one
                continue
            if starting or _our_child_above(child.pid) != self._pid:
                self._account(before, child)
            return child

    def _running(self) -> bool:
        return self._pid is not None and _is_live_child(self._pid)

    def _account(self, before: _Snapshot, child: ChildProcess | None = None) -> None:
        """Find the template this launch started: the child of ours that ``child`` (the
        session) descends from, or without one exactly one new child of ours that is a
        template; and the new fds that are its stderr pipe or its control socket (exactly one
        new SOCK_SEQPACKET socket: with more, another template started meanwhile and the fds
        are left unaccounted)."""
        after = _Snapshot()
        started = [pid for pid in after.pids - before.pids if _is_template(pid)]
        pid = _our_child_above(child.pid) if child is not None else None
        if pid is None and len(started) == 1:
            pid = started[0]
        if pid is None or not _is_template(pid):
            self._pid, self._fds = None, ()
            logger.debug("securepy: the shared template's process was not found; it is not "
                         "accounted for")
            return
        stderr = _link(f"/proc/{pid}/fd/2")
        new = {fd: link for fd, link in after.fds.items() if before.fds.get(fd) != link}
        pipes = [fd for fd, link in new.items() if link.startswith("pipe:") and link == stderr]
        sockets = [fd for fd, link in new.items()
                   if link.startswith("socket:") and _is_seqpacket(fd)]
        self._pid = pid
        self._fds = tuple(sorted(pipes + (sockets if len(sockets) == 1 else [])))

    def status(self) -> SharedTemplateStatus:
        with self._lock:
            running = self._running()
            pid, fds = (self._pid, self._fds) if running else (None, ())
            sessions = sum(1 for child in list(self._children) if child.poll() is None)
        return SharedTemplateStatus(python=self._interpreter.executable, mounts=self._mounts,
                                    pid=pid, fds=fds, sessions=sessions)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._launcher.close()
            self._pid, self._fds = None, ()


class _Snapshot:
    """This process's direct children and open fds (what each is), at one moment. An fd is
    told by what it is, not only its number: the listing's own fd, for one, is reused."""

    def __init__(self) -> None:
        self.pids = _child_pids()
        self.fds = {int(fd): _link(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}


def _child_pids() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children", encoding="ascii") as f:
                found.update(int(pid) for pid in f.read().split())
        except OSError:
            pass  # the thread ended meanwhile
    return found


def _is_template(pid: int) -> bool:
    """A template's bubblewrap: its command (after bubblewrap's own options, passed by fd)
    runs the worker in template mode."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    worker = os.fsencode(WORKER_DIR)
    return worker in argv and b"template" in argv[argv.index(worker):]


def _our_child_above(pid: int) -> int | None:
    """The child of this process that ``pid`` descends from (a forked session's worker: the
    template's bubblewrap), or None."""
    for _ in range(64):  # a session is a few levels below; a loop of pids cannot be
        parent = _parent(pid)
        if parent is None or parent <= 1:
            return None
        if parent == os.getpid():
            return pid
        pid = parent
    return None


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _is_live_child(pid: int) -> bool:
    """``pid`` is still our child and has not exited (a zombie has: its template launcher has
    not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] not in ("Z", "X") and int(fields[1]) == os.getpid()


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _is_seqpacket(fd: int) -> bool:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        return sock.type == socket.SOCK_SEQPACKET
    finally:
        sock.detach()


_lock = threading.Lock()
_entries: dict[tuple[Interpreter, tuple[Mount, ...], tuple[tuple[str, str], ...]],
               _SharedTemplate] = {}


def _forget_after_fork() -> None:
    """A forked child of the host does not own the parent's templates: it must neither stop
    them at its exit nor fork sessions from them."""
    global _lock, _entries
    _lock = threading.Lock()
    _entries = {}


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(close_shared_templates)
