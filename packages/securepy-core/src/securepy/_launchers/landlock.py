"""The Landlock wall: a sandbox for hosts where namespaces cannot be made.

Default containers (Docker's, Podman's, Kubernetes' default seccomp profile, no
``CAP_SYS_ADMIN``) refuse ``unshare``, ``clone`` with namespace flags and ``mount``, so
bubblewrap cannot run there; they allow ``seccomp``, ``prctl`` and the ``landlock_*`` calls.
This wall is built from those alone (the worker side is ``_worker/landlock.py``):

- **Filesystem** (Landlock): read and execute beneath ``/usr``, the ``/lib*`` and ``/bin``
  links, the few ``/etc`` files bubblewrap binds, the interpreter's installation and the
  worker; read-write beneath the session's own workspace directory only (made by the host
  per session, mode 0700, owned by the session's uid, removed when it ends; no rename or link
  between two directories, which would hide a tree from the host's walk); ``/dev/null``,
  ``/dev/zero``, ``/dev/full``, ``/dev/random`` and ``/dev/urandom``. Nothing else: no
  ``/proc``, ``/sys``, home, host ``/tmp`` or sockets on disk.
- **Network**: TCP bind and connect denied (Landlock ABI 4), and seccomp refuses ``socket()``
  itself: only ``socketpair(AF_UNIX, SOCK_STREAM)`` (UDP, raw and netlink sockets included;
  a datagram pair could reach sockets on disk). No inotify (it would watch host directories).
- **Other processes**: signals and abstract unix sockets scoped to the session (Landlock
  ABI 6); ``ptrace``, ``process_vm_*`` and ``pidfd_getfd`` refused by seccomp.
- **Its own processes**: the process started here forks the worker and stays outside the
  wall as the session's keeper (``_worker/keeper.py``, a child subreaper): every process the
  code starts stays in its tree, orphans are reaped, and what is left dies with the worker.
- **Identity**: as root (also root in a container), a uid and gid of its own
  (:mod:`.identity`), no capabilities (the uid change from root clears them all), no groups.
- no-new-privs, the seccomp allow list, the same rlimits as the namespace wall, and a memory
  and pids cgroup where the host offers one (where it does not, ``memfd_create`` is refused:
  memfd pages written and never mapped count against no rlimit).

- **Mounts**: a Landlock rule on each ``securepy.Mount``'s host path, read-only or writable
  (:mod:`.landlock_mounts`: a host directory stays at its own path, shown by a link in the
  workspace for a relative ``path_inside``); matplotlib's prepared font cache is copied into
  the session's matplotlib directory.
- **The workspace's size** (:mod:`.landlock_workspace`): ``RLIMIT_FSIZE`` at most
  ``Limits.workspace_bytes``, and a host thread that measures every live workspace (bytes and
  files) and stops a session past its bounds (``ResourceLimitError``, ``limit="workspace"``).

What it does not give (docs/threat-model.md has the table): no pid namespace (the code can
learn other pids exist, with ``kill(pid, 0)`` answering EPERM rather than ESRCH, though it can
neither signal nor read them), no network namespace (loopback UDP is refused by seccomp, not
by a namespace), no private ``/dev/shm`` (refused instead), and the workspace is a directory
on the host's disk, bounded after the fact rather than by a tmpfs (the code can pass the bound
by what it writes between two scans, and the session's state is lost when it is stopped).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
from typing import Any

from .._interpreter import Interpreter
from .._mounts import Mount
from .._worker import BOOTSTRAP, WORKER_DIR
from ..errors import SandboxUnavailableError
from .base import LaunchSpec, PopenChild, describe_signal_exit
from .bubblewrap import create_cgroup
from .cgroups import ChildCgroup
from .identity import Identity, lease_identity
from .landlock_mounts import place_mounts
from .landlock_processes import first_child, kill_tree, kill_uid
from .landlock_workspace import (
    WorkspaceWatch,
    copy_font_cache,
    file_bound,
    make_workspace,
    remove_workspace,
    watch,
)
from .procfs import read_process_usage
from .seccomp import SeccompUnavailable, compile_filter
from .spawner import spawn
from .wall_config import ETC_FILES, SYSTEM_LINKS, bind_sources

__all__ = [
    "LandlockChild",
    "LandlockLauncher",
    "landlock_abi",
    "landlock_problem",
    "landlock_problem_for",
]

logger = logging.getLogger("securepy")

# The worker's bootstrap with the wall raised between loading the package and the worker.
_HEAD, _SEP, _TAIL = BOOTSTRAP.partition("del b,e,d,s,m\n")
LANDLOCK_BOOTSTRAP = (
    _HEAD + _SEP + "import _securepy_worker.landlock as w\nw.enter()\ndel w\n" + _TAIL
)
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# Without root every session runs as the host user: only a kernel that scopes signals keeps
# the code from signalling the host's own processes.
_MIN_ABI_WITHOUT_ROOT = 6


class LandlockLauncher:
    """Starts the worker behind Landlock and seccomp (see the module docstring)."""

    sandboxed = True
    wall = "landlock"

    def launch(self, spec: LaunchSpec) -> LandlockChild:
        """Start the worker described by ``spec`` behind the Landlock wall.

        Raises:
            securepy.errors.SandboxUnavailableError: Landlock, seccomp or no-new-privs are
                missing here (the message names which).
        """
        problem = landlock_problem_for(spec.interpreter)
        if problem is not None:
            raise SandboxUnavailableError(f"the Landlock wall cannot stand here: {problem}")
        identity = lease_identity() if os.geteuid() == 0 else None
        workspace = make_workspace(identity)
        cgroup: ChildCgroup | None = None
        fds: list[int] = []
        try:
            links = place_mounts(spec.mounts, workspace, identity)
            copy_font_cache(spec.interpreter, workspace, identity)
            cgroup = create_cgroup(spec, own_processes=1)  # the keeper
            if cgroup is not None:
                fds += [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in cgroup.thread_join_files]
            plan = _plan(spec, workspace, links)
            # Without a memory cgroup, memfd pages written and never mapped count against no
            # limit (RLIMIT_AS counts mappings): memfd_create is refused there.
            bounded = spec.limits.memory_bytes is None or (
                cgroup is not None and "memory" in cgroup.dirs
            )
            program = compile_filter("landlock", memfd=bounded)
            plan_fd = _memfd(json.dumps(plan).encode() + b"\n" + program)
            fds.insert(0, plan_fd)
            argv = (
                spec.argv[0],
                *_bootstrap_options(spec.argv),
                LANDLOCK_BOOTSTRAP,
                WORKER_DIR,
                str(spec.child_fd),
                *map(str, fds),
            )
            env = {**spec.env, "HOME": workspace, "TMPDIR": f"{workspace}/.tmp"}
            uid, gid = (None, None) if identity is None else (identity.uid, identity.gid)
            popen = spawn(
                lambda: subprocess.Popen(
                    argv,
                    pass_fds=(spec.child_fd, *fds),
                    env=env,
                    cwd=workspace,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    user=uid,
                    group=gid,
                    extra_groups=None if identity is None else [],
                )
            )
        except BaseException:
            if cgroup is not None:
                cgroup.kill_and_remove()
            remove_workspace(workspace)
            if identity is not None:
                identity.release()
            raise
        finally:
            for fd in fds:
                os.close(fd)
        child = LandlockChild(popen, cgroup, identity, workspace)
        child.watch_workspace(spec.limits.workspace_bytes)
        return child


class LandlockChild(PopenChild):
    """The worker behind the Landlock wall, its descendants, cgroup, workspace and uid."""

    sandboxed = True
    wall = "landlock"

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        cgroup: ChildCgroup | None,
        identity: Identity | None,
        workspace: str,
    ) -> None:
        super().__init__(popen)
        self._cgroup = cgroup
        self._identity = identity
        self._workspace: str | None = workspace
        self._watch: WorkspaceWatch | None = None
        self._exceeded: str | None = None

    def watch_workspace(self, max_bytes: int | None) -> None:
        """Bound the workspace from the host (see :mod:`.landlock_workspace`)."""
        assert self._workspace is not None
        self._watch = watch(WorkspaceWatch(
            self._workspace, max_bytes=max_bytes, max_files=file_bound(max_bytes),
            worker_pid=self._popen.pid, on_exceeded=self._stop_for_workspace))

    def _stop_for_workspace(self, reason: str) -> None:
        """Called on the watch thread: the workspace passed its bound. The session learns it
        from the worker's death (``describe_exit``) and replaces the child."""
        logger.info("securepy: session workspace %s: %s; stopping the child",
                    self._workspace, reason)
        self._exceeded = reason
        if self._popen.returncode is None:
            kill_tree(self._popen.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signal.SIGKILL)

    def interrupt(self) -> None:
        """SIGINT to the keeper, which forwards it to the worker."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signal.SIGINT)

    def kill(self) -> None:
        """Kill the worker and every process it started, reap it, remove its cgroup and its
        workspace, give its uid back. Idempotent.

        There is no pid namespace to end: the process the host started is the session's
        keeper (``_worker/keeper.py``), a child subreaper, so the whole tree stays below it
        even where the code ended the worker; that tree is killed leaves-last until none is
        left (anything forked meanwhile is reparented to the keeper, still alive, and found by
        the next pass), then the keeper. As root, every process still running as the
        session's uid is killed too, and the uid is given back only when none is left.
        """
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self._popen.returncode is None:
            kill_tree(self._popen.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signal.SIGKILL)
            self._popen.wait()
        if self._cgroup is not None:
            self._cgroup.kill_and_remove()
            self._cgroup = None
        if self._identity is not None:
            if kill_uid(self._identity.uid):
                self._identity.release()
            self._identity = None
        if self._workspace is not None:
            remove_workspace(self._workspace)
            self._workspace = None
        if self._popen.stderr is not None:
            self._popen.stderr.close()

    @property
    def exit_detail(self) -> str | None:
        """Why the host stopped the child, when it did (the workspace watch's reason)."""
        return self._exceeded

    def describe_exit(self, status: int) -> str | None:
        if self._exceeded is not None:
            return "workspace"
        if status == -signal.SIGKILL and self._cgroup is not None and self._cgroup.oom_killed():
            return "memory"
        return describe_signal_exit(-status if status < 0 else 0)

    def resource_usage(self) -> dict[str, float] | None:
        return read_process_usage(first_child(self._popen.pid) or self._popen.pid)


@functools.cache
def landlock_abi() -> int:
    """This kernel's Landlock ABI version (0: none)."""
    from .._worker.landlock import abi_version

    return abi_version()


@functools.cache
def landlock_problem() -> str | None:
    """Why the Landlock wall cannot be built here, or None when it can."""
    abi = landlock_abi()
    if abi < 1:
        return (
            "the kernel has no Landlock (Linux 5.13 or newer with CONFIG_SECURITY_LANDLOCK "
            "and landlock in the lsm= boot list), or a seccomp profile refuses it"
        )
    if os.geteuid() != 0 and abi < _MIN_ABI_WITHOUT_ROOT:
        return (
            f"the kernel's Landlock ABI is {abi}; without root every session shares the "
            f"host user's uid, and only ABI {_MIN_ABI_WITHOUT_ROOT} (Linux 6.12) keeps its "
            "signals from reaching the host's own processes; run as root (a uid per "
            "session) or on a newer kernel"
        )
    try:
        compile_filter("landlock")
    except SeccompUnavailable as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=16)
def _hidden_from_others(interpreter: Interpreter) -> str | None:
    """The first directory on the way to the interpreter's files that a user other than its
    owner cannot pass through, or None. (bubblewrap binds around this; Landlock cannot.)"""
    for root in (*bind_sources(interpreter), os.path.realpath(interpreter.executable)):
        parts = os.path.realpath(root).strip("/").split("/")
        for i in range(len(parts) + 1):
            path = "/" + "/".join(parts[:i])
            try:
                mode = os.stat(path).st_mode
            except OSError:
                break
            if os.path.isdir(path) and not mode & 0o001:
                return path
    return None


def landlock_problem_for(interpreter: Interpreter) -> str | None:
    """Why the Landlock wall cannot run ``interpreter`` here, or None when it can."""
    problem = landlock_problem()
    if problem is None and os.geteuid() == 0:
        hidden = _hidden_from_others(interpreter)
        if hidden is not None:
            problem = (
                f"it runs each session as a uid of its own, which cannot enter {hidden} (only "
                "its owner may); install the interpreter where every user can read it "
                "(/usr/local, /opt; pyenv under /root is not), or pass python= such an "
                "interpreter"
            )
    return problem


def _bootstrap_options(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The interpreter's flags from the session's argv ("-I", "-S"), up to its "-c"."""
    return argv[1 : argv.index("-c") + 1] if "-c" in argv else ("-I", "-S", "-c")


_DIRECTORY_ROOM = 64 * 1024  # bytes of directories a workspace holds (its own, .tmp, ...)


def _file_size_cap(workspace_bytes: int | None) -> int | None:
    if workspace_bytes is None:
        return None
    return max(workspace_bytes - _DIRECTORY_ROOM, workspace_bytes // 2)


def _plan(spec: LaunchSpec, workspace: str, links: dict[str, Mount]) -> dict[str, Any]:
    """What the worker's bootstrap builds the wall from (``_worker/landlock.py``)."""
    system = ["/usr", *(f"/{name}" for name in SYSTEM_LINKS)]
    etc = [path for path in ETC_FILES if os.path.exists(path)]
    return {
        "read_only": [
            *system, *etc, *bind_sources(spec.interpreter),
            *(m.host_path for m in spec.mounts if not m.writable),
        ],
        "read_write": [workspace, *(m.host_path for m in spec.mounts if m.writable)],
        "devices": list(_DEVICES),
        # One file never outgrows the workspace (the rest is WorkspaceWatch's), with room left
        # for the directories the watch counts too: a file of exactly workspace_bytes would
        # be over the bound and end the session the code could have kept.
        "file_size_cap": _file_size_cap(spec.limits.workspace_bytes),
        # For session.files: a mount's link in the workspace is walked from its host path.
        "mounts": {inside: [m.host_path, m.writable] for inside, m in links.items()},
    }


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("securepy-landlock-plan", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
