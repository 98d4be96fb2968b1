"""Sessions forked from a template: one sandboxed interpreter, started once, forks each
session into namespaces of its own (the worker side is ``_worker/template.py``).

A bubblewrap start costs about 30 ms: the sandbox's set-up, a fresh interpreter, the worker's
imports. :class:`TemplateLauncher` pays that once per launcher; every session after that is a
fork of the ready template plus its own mounts, about 2–4 ms.

What each session gets is the wall of :mod:`.bubblewrap`, made per session by the forked
child instead of by bubblewrap: its own pid, mount, net, IPC, UTS and cgroup namespaces, its
own workspace, ``/tmp``, ``/dev/shm`` and ``/proc`` (same read-only and masked entries), the
identity a bubblewrap session has (see below) with no capabilities, an empty bounding set,
no-new-privs, the seccomp filter, the same rlimits and, where the host has them, a memory and
pids cgroup of its own. pid 1 of its namespace is a reaper the template
forked ahead of time (as bubblewrap's pid 1, it reaps orphans); the worker is pid 2. Killing
the reaper ends the namespace, so that is how a session is killed.

The template keeps what it needs to build each session, in both of bubblewrap's modes:

- **root-drop** (host root): ``CAP_SYS_ADMIN`` and the set-id and ``NET_ADMIN`` capabilities
  inside bubblewrap's namespaces; each session runs as a uid and gid of its own, leased from
  :mod:`.identity` for the session's life.
- **user** (any other host user): bubblewrap's unprivileged user namespace with the template
  as its uid 0, holding ``CAP_SYS_ADMIN``, ``CAP_SETPCAP`` and ``CAP_SETFCAP`` over that
  namespace only (no ``--disable-userns``: sessions need one more user namespace each). Each
  session makes its namespaces and mounts there, then takes a user namespace of its own that
  maps the host user's uid and gid (``uid_map`` reads ``1000 0 1``, as in a user-mode
  bubblewrap session) and holds no further user namespace (``max_user_namespaces`` 0, what
  ``--disable-userns`` gives). Every session runs as the host user's uid, as bubblewrap's do;
  cgroups only where that user has a delegated one. Why this order, and which kernel rules it
  meets, is in ``_worker/privileges.py`` and ``_worker/template.py``.

Where neither can run (no pidfds, or no seccomp binding for a user-mode template, which relies
on the filter as root's does), :func:`template_problem` says why and callers start sessions
one by one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import signal
import socket
import threading
from typing import Any

from .._fontcache import SANDBOX_FONT_CACHE, font_cache
from .._interpreter import Interpreter
from .._limits import Limits
from .._mounts import Mount, target_inside
from .._worker import BOOTSTRAP, WORKER_DIR
from .._worker.control import receive_control, send_control
from ..errors import SandboxUnavailableError
from .base import ChildProcess, Launcher, LaunchSpec
from .bubblewrap import (
    PROC_MASKED_DIRS,
    PROC_MASKED_FILES,
    PROC_READ_ONLY_DIRS,
    SANDBOX_SHM_BYTES,
    BubblewrapChild,
    WallConfig,
    bind_sources,
    create_cgroup,
    start_sandbox,
    wall_config,
)
from .cgroups import ChildCgroup
from .identity import Identity, lease_identity
from .seccomp import compile_filter
from .template_child import TemplateChild

__all__ = ["TemplateChild", "TemplateLauncher", "TemplateProcess", "template_problem"]

logger = logging.getLogger("securepy")

_START_TIMEOUT = 30.0
_SPAWN_TIMEOUT = 10.0
_EXIT_TIMEOUT = 5.0
# What the template needs to build each session; each session then drops all of them.
_ROOT_TEMPLATE_CAPS = (
    "--cap-drop", "ALL", "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETUID",
    "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP", "--cap-add", "CAP_NET_ADMIN",
)  # fmt: skip
# In user mode, over bubblewrap's user namespace only: namespaces and mounts (SYS_ADMIN), the
# bounding-set drops (SETPCAP), and each session's uid_map onto the template's uid 0, which the
# kernel allows only when its creator held SETFCAP (verify_root_map).
_USER_TEMPLATE_CAPS = (
    "--cap-drop", "ALL", "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETPCAP",
    "--cap-add", "CAP_SETFCAP",
)  # fmt: skip


def template_problem(interpreter: Interpreter) -> str | None:
    """Why sessions cannot be forked from a template on this host, or None if they can.

    Raises:
        securepy.errors.SandboxUnavailableError: the sandbox itself cannot start.
    """
    config = wall_config(interpreter)
    if not config.seccomp:
        return ("the template needs the seccomp filter (each session it forks installs it), "
                "and the seccomp binding or the system libseccomp is missing: reinstall "
                "securepy-core, or pip install pyseccomp, and apt install libseccomp2")
    if not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):
        return "the template needs pidfds (Linux 5.3 or newer)"
    return None


class TemplateLauncher:
    """Starts sessions by forking them from a template (see the module docstring).

    The template starts with the first launch and lives until :meth:`close`. If it dies, the
    next launch starts a new one.

    Args:
        preload: modules the template imports once, so every session starts with them loaded.
        fall_back: where no template can run (not root, see :func:`template_problem`, or the
            template fails to start), start each session with bubblewrap instead of failing.
    """

    sandboxed = True

    @property
    def pids_cgroup(self) -> bool:
        """Each child gets a pids cgroup here, so the worker need not set RLIMIT_NPROC (which
        counts every process of the sandbox's uid, other sessions' too)."""
        from .bubblewrap import _cgroup_support

        return "pids" in _cgroup_support().parents

    def __init__(self, *, preload: tuple[str, ...] = (), fall_back: bool = False,
                 wall: str = "namespaces") -> None:
        self._preload = preload
        self._fall_back = fall_back
        self._wall = wall
        self._lock = threading.Lock()
        self._templates: dict[Interpreter, _Template] = {}
        self._fallback: Launcher | None = None
        self._closed = False

    def launch(self, spec: LaunchSpec) -> ChildProcess:
        """Fork a session for ``spec`` from the (started if needed) template.

        Raises:
            securepy.errors.SandboxUnavailableError: the template or the session cannot start.
        """
        with self._lock:
            if self._closed:
                raise SandboxUnavailableError("the session template was closed")
            template = self._fallback or self._templates.get(spec.interpreter)
            if template is None or (isinstance(template, _Template) and not template.alive):
                if template is not None:
                    template.close()
                template = self._start_template(spec)
        return template.launch(spec)

    def _start_template(self, spec: LaunchSpec) -> _Template | Launcher:
        try:
            template = _Template.start(spec, self._preload)
        except SandboxUnavailableError as exc:
            if not self._fall_back:
                raise
            from . import select_launcher

            self._fallback = select_launcher(sandbox=True, wall=self._wall)
            logger.info("sessions start one by one (%s wall), not from a template: %s",
                        self._wall, exc)
            return self._fallback
        self._templates[spec.interpreter] = template
        return template

    def close(self) -> None:
        """Stop the template (and so every session still forked from it). Idempotent."""
        with self._lock:
            self._closed = True
            templates, self._templates = list(self._templates.values()), {}
        for template in templates:
            template.close()

    def running(self) -> tuple[TemplateProcess, ...]:
        """The templates running now: what each holds of this process (for accounting, such
        as a leak check that must tell a template from a leftover)."""
        with self._lock:
            templates = list(self._templates.values())
        return tuple(template.process() for template in templates if template.alive)


@dataclasses.dataclass(frozen=True, slots=True)
class TemplateProcess:
    """One running template, as :meth:`TemplateLauncher.running` sees it.

    Attributes:
        pid: host pid of its bubblewrap, a child of this process.
        fds: this process's file descriptors it holds (its control socket, its stderr pipe).
    """

    pid: int
    fds: tuple[int, ...]


class _Template:
    """One running template: its bubblewrap, its control socket and the thread reading it."""

    def process(self) -> TemplateProcess:
        """Its pid and the fds it holds here."""
        stderr = self._sandbox.stderr_fd()
        fds = [self._control.fileno(), *([] if stderr is None else [stderr])]
        return TemplateProcess(self._sandbox.pid, tuple(sorted(fd for fd in fds if fd >= 0)))

    def __init__(self, sandbox: BubblewrapChild, control: socket.socket) -> None:
        self._sandbox = sandbox
        self._control = control
        self.mounts: tuple[Mount, ...] = ()
        self.mode = "root-drop"  # or "user": bubblewrap's mode (see the module docstring)
        self._spawn_lock = threading.Lock()
        self._replies: queue.SimpleQueue[tuple[dict[str, Any], list[int]]] = queue.SimpleQueue()
        self._children: dict[int, TemplateChild] = {}
        self._reapers: dict[int, TemplateChild] = {}  # each session's pid 1
        # Exits reported before the launching thread registered the child (it died at once).
        self._early_exits: dict[int, tuple[int, float]] = {}
        self._children_lock = threading.Lock()
        # The next session's cgroup, made while the last one isolated itself (the host only
        # waits then), for a session with the same limits.
        self._spare_cgroup: tuple[Limits, ChildCgroup | None] | None = None
        self.alive = True
        self._reader = threading.Thread(target=self._read_forever, name="securepy-template",
                                        daemon=True)

    @classmethod
    def start(cls, session_spec: LaunchSpec, preload: tuple[str, ...]) -> _Template:
        interpreter = session_spec.interpreter
        problem = template_problem(interpreter)
        if problem is not None:
            raise SandboxUnavailableError(problem)
        config = wall_config(interpreter)
        host, inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        seccomp_fd = os.memfd_create("securepy-seccomp", 0)
        try:
            os.write(seccomp_fd, compile_filter())
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
            spec = LaunchSpec(
                interpreter=interpreter,
                argv=(interpreter.executable, "-I", "-S", "-c", BOOTSTRAP, WORKER_DIR,
                      str(inside.fileno()), "template", str(seccomp_fd)),
                child_fd=inside.fileno(),
                limits=Limits(),
                env=session_spec.env,
            )
            template_config = _template_wall(config, session_spec.mounts)
            sandbox = start_sandbox(template_config, spec, None, extra_fds=(seccomp_fd,))
        except BaseException:
            host.close()
            raise
        finally:
            inside.close()
            os.close(seccomp_fd)
        template = cls(sandbox, host)
        template.mounts = session_spec.mounts
        template.mode = config.mode
        try:
            template._configure(config, interpreter, preload)
        except BaseException:
            template.close()
            raise
        template._reader.start()
        return template

    def _configure(self, config: WallConfig, interpreter: Interpreter,
                   preload: tuple[str, ...]) -> None:
        plan = {
            "mode": config.mode,
            "workspace": config.workspace,
            "own_tmp": config.own_tmp,
            "tmp_binds": [p for p in bind_sources(interpreter)
                          if p == "/tmp" or p.startswith("/tmp/")],
            "proc_read_only": list(PROC_READ_ONLY_DIRS),
            "proc_masked_files": list(PROC_MASKED_FILES),
            "proc_masked_dirs": list(PROC_MASKED_DIRS),
            "uid": config.uid,
            "gid": config.gid,
            # Each session binds the template's staged mounts at their places in its own
            # workspace (which hides the template's).
            "font_cache": SANDBOX_FONT_CACHE if font_cache(interpreter) else None,
            "mounts": [[_staging(index), target_inside(mount, config.workspace), mount.writable]
                       for index, mount in enumerate(self.mounts)],
        }
        send_control(self._control, {"kind": "configure", "plan": plan,
                                     "path": list(interpreter.path), "preload": list(preload)})
        self._control.settimeout(_START_TIMEOUT)
        try:
            reply, fds = receive_control(self._control)
        except TimeoutError:
            reply, fds = {"kind": "error", "message": "no answer in 30 s"}, []
        finally:
            self._control.settimeout(None)
        _close_all(fds)
        if reply.get("kind") != "ready":
            detail = reply.get("message") or self._sandbox.read_startup_error() or "no output"
            raise SandboxUnavailableError(f"the session template failed to start: {detail}")

    def launch(self, spec: LaunchSpec) -> TemplateChild:
        cgroup = self._take_cgroup(spec)
        identity: Identity | None = None
        join_fds: list[int] = []
        try:
            # One uid per session as root; as any other user, the user's own (bubblewrap's too).
            identity = lease_identity() if self.mode == "root-drop" else None
            if cgroup is not None:
                join_fds += [os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                             for path in cgroup.thread_join_files]
            with self._spawn_lock:
                request: dict[str, Any] = {
                    "kind": "spawn", "workspace_bytes": spec.limits.workspace_bytes,
                    "shm_bytes": _shm_bytes(spec.limits), "cgroups": len(join_fds)}
                if identity is not None:
                    request |= {"uid": identity.uid, "gid": identity.gid}
                send_control(self._control, request, [spec.child_fd, *join_fds])
                try:
                    reply, fds = self._replies.get(timeout=_SPAWN_TIMEOUT)
                except queue.Empty:
                    # Its answer may still come and would then be taken for the next one's:
                    # this template is done; the launcher starts a new one.
                    self.close()
                    raise SandboxUnavailableError(
                        "the session template did not answer a start in 10 s") from None
                if reply.get("kind") != "spawned" or len(fds) != 2:
                    _close_all(fds)
                    raise SandboxUnavailableError(
                        f"the session template could not start a session: "
                        f"{str(reply.get('message', 'it has stopped'))[:2000]}")
                child = TemplateChild(fds[0], cgroup, spec.limits, fds[1], identity)
                identity = None  # the child owns it now
                with self._children_lock:
                    early = self._early_exits.pop(reply["pid"], None)
                    reaper_early = self._early_exits.pop(reply["reaper"], None)
                    if early is None:
                        self._children[reply["pid"]] = child
                    if reaper_early is None:
                        self._reapers[reply["reaper"]] = child
                if early is not None:
                    child.exited(*early)
                if reaper_early is not None:
                    child.reaper_exited()
        except BaseException:
            if cgroup is not None:
                cgroup.kill_and_remove()
            if identity is not None:
                identity.release()
            raise
        finally:
            _close_all(join_fds)
        self._make_spare_cgroup(spec)
        return child

    def _take_cgroup(self, spec: LaunchSpec) -> ChildCgroup | None:
        with self._children_lock:
            spare, self._spare_cgroup = self._spare_cgroup, None
        if spare is not None:
            limits, cgroup = spare
            if limits == spec.limits:
                return cgroup
            if cgroup is not None:
                cgroup.kill_and_remove()
        return create_cgroup(spec, own_processes=0)

    def _make_spare_cgroup(self, spec: LaunchSpec) -> None:
        cgroup = create_cgroup(spec, own_processes=0)
        with self._children_lock:
            if self.alive and self._spare_cgroup is None:
                self._spare_cgroup, cgroup = (spec.limits, cgroup), None
        if cgroup is not None:  # not wanted after all
            cgroup.kill_and_remove()

    def close(self) -> None:
        with self._children_lock:
            self.alive = False
            spare, self._spare_cgroup = self._spare_cgroup, None
        self._sandbox.kill()
        if spare is not None and spare[1] is not None:
            spare[1].kill_and_remove()
        with contextlib.suppress(OSError):
            self._control.shutdown(socket.SHUT_RDWR)
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(_EXIT_TIMEOUT)
        self._control.close()

    def _read_forever(self) -> None:
        try:
            while True:
                message, fds = receive_control(self._control)
                kind = message.get("kind")
                if kind == "exited":
                    _close_all(fds)
                    status, cpu = int(message["status"]), float(message["cpu_seconds"])
                    with self._children_lock:
                        child = self._children.pop(message["pid"], None)
                        owner = self._reapers.pop(message["pid"], None)
                        if child is None and owner is None:
                            self._early_exits[message["pid"]] = (status, cpu)
                    if child is not None:
                        child.exited(status, cpu)
                    if owner is not None:
                        owner.reaper_exited()
                elif kind in ("spawned", "spawn_failed"):
                    self._replies.put((message, fds))
                else:  # the host hung up, or the template died
                    _close_all(fds)
                    break
        except (OSError, ValueError):
            pass
        self.alive = False
        # The template's pid namespace is gone, and every session in it.
        self._replies.put(({"kind": "spawn_failed", "message": "the template stopped"}, []))
        with self._children_lock:
            children, self._children = list(self._children.values()), {}
            reapers, self._reapers = list(self._reapers.values()), {}
        for child in children:
            child.exited(signal.SIGKILL, 0.0)
        for owner in reapers:
            owner.reaper_exited()



def _template_wall(config: WallConfig, mounts: tuple[Mount, ...] = ()) -> WallConfig:
    """The template's bubblewrap: the sandbox's mounts and namespaces, the capabilities it
    needs to build sessions, no setpriv (it stays root) and no seccomp (each session installs
    it on itself). The sessions' mounts are staged under /securepy (and their places outside the
    workspace made, while the root is still writable).

    In user mode the template is uid 0 of bubblewrap's user namespace, which may hold more
    (each session makes its own, and limits that one): no ``--disable-userns``."""

    options = list(config.options)
    caps: tuple[str, ...] = _ROOT_TEMPLATE_CAPS
    if config.mode == "user":
        at = options.index("--disable-userns")
        options[at : at + 1] = ["--uid", "0", "--gid", "0"]
        caps = _USER_TEMPLATE_CAPS
    for index, mount in enumerate(mounts):
        options += ["--bind" if mount.writable else "--ro-bind", mount.host_path,
                    _staging(index)]
        if mount.path_inside.startswith("/"):
            options += ["--perms", "0755", "--dir", mount.path_inside]
    return dataclasses.replace(config, options=tuple(options), caps=caps, prefix=(),
                               seccomp=False)


def _staging(index: int) -> str:
    return f"/securepy/mounts/{index}"


def _shm_bytes(limits: Limits) -> int | None:
    workspace = limits.workspace_bytes  # as bubblewrap's launcher sizes it
    return None if workspace is None else min(SANDBOX_SHM_BYTES, workspace)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
