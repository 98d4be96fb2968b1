"""The Linux sandbox: the worker runs inside bubblewrap.

What the sandboxed code gets:

- new pid, net, ipc, uts and cgroup namespaces (a user namespace too when the host is not
  root, see *Identity*); ``--die-with-parent``, ``--new-session``; no capabilities; no network
  at all (only a loopback nobody else shares);
- a root filesystem built from nothing: ``/usr`` (and the ``/bin``, ``/lib*`` links), a few
  ``/etc`` files the C library and Python need, the interpreter's installation and the securepy
  package directory, all read-only and at their host paths. There is no host home, no ``/root``
  contents, no ``/etc/passwd`` or ``/etc/shadow`` (a one-line passwd and group name the sandbox
  user), no ``/sys``, no host working directory or temp files, no ``/run`` or ``/var`` (so no
  docker or dbus socket). ``/`` and ``/dev`` are remounted read-only;
- a private tmpfs of ``Limits.workspace_bytes`` as ``/workspace`` (the cwd and ``$HOME``) with
  ``/tmp`` a link into it, and ``/dev/shm`` a tmpfs of its own size;
- a fresh ``/proc`` showing only the sandbox's processes, with ``/proc/sys`` read-only and the
  kernel-global files that leak host state (``kcore``, ``keys``, ``timer_list``,
  ``sched_debug``, ``kmsg``, ...) masked;
- the seccomp filter of :mod:`.seccomp`;
- an environment of exactly the allowlist the session built. bubblewrap itself starts with an
  empty environment and reads its options from a memfd (``--args FD``): it is pid 1 inside and
  ``/proc/1/environ`` and ``/proc/1/cmdline`` are readable there.

Identity (never host uid 0's powers inside):

- **Host user is not root** ("user" mode): bubblewrap runs unprivileged in a new user
  namespace mapping only the caller's uid, with ``--disable-userns`` so the code cannot make
  more user namespaces. The seccomp filter is a further layer; without the binding the rest of
  the wall still stands.
- **Host user is root** ("root-drop" mode; CI and most containers): a user namespace would map
  inside uid 0 to host uid 0, which owns ``/proc/sys`` and many other files. Dropping to uid
  65534 *before* bubblewrap does not work when the interpreter lives under ``/root`` (pyenv):
  bubblewrap resolves bind sources with its caller's credentials and ``/root`` is 0700, and
  neither ``--ro-bind-fd`` nor ``--userns`` helps in 0.8. So bubblewrap runs as root *without*
  a user namespace, builds the mounts (it can read ``/root``), keeps only ``CAP_SETUID`` and
  ``CAP_SETGID``, and the first program inside is ``setpriv``, which switches to the session's
  own uid and gid (leased from :mod:`.identity`; 65534 only for the launcher's own probe) with
  no supplementary groups, no capabilities (effective, permitted, inheritable and
  ambient all cleared by the uid change) and no-new-privs, then execs the worker. The code thus
  runs as a host uid no other live session has: it cannot write sysctls, signal or read
  bubblewrap (pid 1, host root) or another session, and RLIMIT_NPROC and the kernel's other
  per-uid budgets are its own. As ``--disable-userns`` needs a user namespace, the seccomp
  filter (which refuses ``unshare``, ``setns`` and namespace flags to ``clone``) is mandatory in
  this mode; without it the sandbox refuses to start.

Resource limits: the worker sets its rlimits itself; this launcher adds the tmpfs sizes and,
where the host offers one, a memory and pids cgroup per child (:mod:`.cgroups`).

The parts: :mod:`.wall_config` builds what every sandbox of one interpreter shares (namespaces,
mounts, identity), :mod:`.bwrap_binary` finds bubblewrap and explains its failures, and this
module proves the wall once, starts each sandbox with its own workspace and environment, and
stops it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import signal
import subprocess
from collections.abc import Iterable

from .._interpreter import Interpreter
from .._mounts import target_inside
from ..errors import SandboxUnavailableError
from .base import LaunchSpec, PopenChild, describe_signal_exit
from .bwrap_binary import diagnose_bwrap_failure, find_bwrap
from .cgroups import CgroupSupport, ChildCgroup, create_child_cgroup, detect_cgroup_support
from .identity import Identity, lease_identity
from .procfs import child_pids, parent_pid, read_process_usage
from .seccomp import seccomp_filter_fd
from .spawner import spawn
from .wall_config import (
    PROC_MASKED_DIRS,
    PROC_MASKED_FILES,
    PROC_READ_ONLY_DIRS,
    SANDBOX_SHM_BYTES,
    WORKSPACE,
    WallConfig,
    bind_sources,
    build_wall_config,
    setpriv_options,
)

__all__ = [
    "PROC_MASKED_DIRS",
    "PROC_MASKED_FILES",
    "PROC_READ_ONLY_DIRS",
    "SANDBOX_SHM_BYTES",
    "WORKSPACE",
    "BubblewrapChild",
    "BubblewrapLauncher",
    "WallConfig",
    "bind_sources",
    "create_cgroup",
    "diagnose_bwrap_failure",
    "find_bwrap",
    "kill_sandbox",
    "start_sandbox",
    "wall_config",
]

logger = logging.getLogger("securepy")

# Run by /bin/sh before bubblewrap: join each cgroup named before "--", then exec the rest. The
# (single-threaded) shell moves itself through v1's "tasks" files: a move of a whole process
# takes a global lock that waits for an RCU grace period, ~10 ms on an idle machine.
_CGROUP_JOIN = (
    'for f; do [ "$f" = -- ] && break; echo 0 >"$f" || exit 125; shift; done; shift; exec "$@"'
)


class BubblewrapLauncher:
    """Starts the worker inside bubblewrap (see the module docstring for the wall)."""

    sandboxed = True
    wall = "namespaces"

    @property
    def pids_cgroup(self) -> bool:
        """Each child gets a pids cgroup here, so the worker need not set RLIMIT_NPROC (which
        counts every process of the sandbox's uid, other sessions' too)."""
        return "pids" in _cgroup_support().parents

    def launch(self, spec: LaunchSpec) -> BubblewrapChild:
        """Start the worker described by ``spec`` inside the sandbox.

        Raises:
            securepy.errors.SandboxUnavailableError: bubblewrap is missing or too old, user
                namespaces or the /proc mount are refused, the interpreter cannot be bound,
                or (as root) the seccomp binding or setpriv is missing.
        """
        config = wall_config(spec.interpreter)
        identity = lease_identity() if config.mode == "root-drop" else None
        cgroup = create_cgroup(spec)
        try:
            return start_sandbox(config, spec, cgroup, identity=identity)
        except BaseException:
            if cgroup is not None:
                cgroup.kill_and_remove()
            if identity is not None:
                identity.release()
            raise


class BubblewrapChild(PopenChild):
    """The sandbox: outer bubblewrap (our child), its pid 1, the worker, their cgroup."""

    sandboxed = True
    wall = "namespaces"

    def __init__(self, popen: subprocess.Popen[bytes], cgroup: ChildCgroup | None,
                 identity: Identity | None = None) -> None:
        super().__init__(popen)
        self._cgroup = cgroup
        self._identity = identity
        self._worker: int | None = None

    def interrupt(self) -> None:
        """SIGINT the worker python (not bubblewrap, which is pid 1 inside)."""
        if self._popen.poll() is not None:
            return
        worker = self._find_worker()
        if worker is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGINT)

    def kill(self) -> None:
        """Kill the whole sandbox, reap it, remove its cgroup, close its pipe. Idempotent.

        SIGKILL to bubblewrap's pid 1 makes the kernel kill every process of the pid namespace,
        and the outer bubblewrap only exits once that pid 1 is reaped, so waiting for the outer
        bubblewrap means nothing of the sandbox is left running.
        """
        if self._popen.returncode is None:
            kill_sandbox(self._popen)
        if self._cgroup is not None:
            self._cgroup.kill_and_remove()
            self._cgroup = None
        if self._identity is not None:
            # The outer bubblewrap was reaped, so its pid namespace, and every process that
            # ran as this uid, is gone: the uid may serve another session.
            self._identity.release()
            self._identity = None
        if self._popen.stderr is not None:
            self._popen.stderr.close()

    def describe_exit(self, status: int) -> str | None:
        """bubblewrap exits 128+N when the worker died of signal N (-N if it was killed)."""
        signum = -status if status < 0 else status - 128 if status > 128 else 0
        if signum == signal.SIGKILL and self._cgroup is not None and self._cgroup.oom_killed():
            return "memory"
        return describe_signal_exit(signum)

    def resource_usage(self) -> dict[str, float] | None:
        worker = self._find_worker()
        return None if worker is None else read_process_usage(worker)

    def _find_worker(self) -> int | None:
        """The worker's host pid: the oldest child of bubblewrap's pid 1 (orphans of the code
        are reparented to pid 1 too, later)."""
        if self._worker is not None and parent_pid(self._worker) is not None:
            return self._worker
        inits = child_pids(self._popen.pid)
        if not inits:
            return None
        candidates = child_pids(inits[0])
        if not candidates:
            return None
        self._worker = min(candidates, key=_start_time)
        return self._worker


def wall_config(interpreter: Interpreter) -> WallConfig:
    """The checked static configuration for ``interpreter``: built, then proven once per
    process by starting the interpreter in it (about 15 ms), so a host that cannot hold the
    wall fails here with the reason rather than in the middle of a session.

    Raises:
        securepy.errors.SandboxUnavailableError: the wall cannot stand on this host; the
            message names the cause and the fix.
    """
    config = build_wall_config(interpreter)
    _prove_wall(config, interpreter)
    return config


def _spec_options(config: WallConfig, spec: LaunchSpec) -> list[str]:
    """Options that depend on the spec: /dev, the workspace, passwd and the environment.

    Order matters: a remount applies to one mount, so each comes after the mounts below it.
    """
    workspace_bytes = spec.limits.workspace_bytes
    shm_bytes = min(SANDBOX_SHM_BYTES, workspace_bytes) if workspace_bytes is not None else None
    options = ["--dev", "/dev", *_size(shm_bytes), "--perms", "01777", "--tmpfs", "/dev/shm"]
    options += ["--remount-ro", "/dev"]
    workspace = config.workspace
    options += [*_size(workspace_bytes), "--perms", "0777", "--tmpfs", workspace]
    options += ["--perms", "01777", "--dir", f"{workspace}/.tmp"]
    if not config.own_tmp:
        options += ["--symlink", f"{workspace}/.tmp", "/tmp"]
    for mount in spec.mounts:  # after the workspace tmpfs, which would hide them
        options += ["--bind" if mount.writable else "--ro-bind", mount.host_path,
                    target_inside(mount, workspace)]
    options += ["--clearenv"]
    env = {**spec.env, "HOME": workspace, "TMPDIR": "/tmp"}
    for key, value in env.items():
        options += ["--setenv", key, value]
    return options


def _size(size: int | None) -> list[str]:
    return [] if size is None else ["--size", str(size)]


def start_sandbox(config: WallConfig, spec: LaunchSpec, cgroup: ChildCgroup | None, *,
                  extra_fds: tuple[int, ...] = (),
                  identity: Identity | None = None) -> BubblewrapChild:
    """Start ``spec`` in the sandbox ``config`` describes; ``extra_fds`` are inherited too.
    ``identity``: the session's own uid/gid (root-drop mode), which the child then owns."""
    fds: list[int] = []
    prefix = config.prefix
    if identity is not None and prefix:
        prefix = (prefix[0], *setpriv_options(identity.uid, identity.gid))
        config = dataclasses.replace(config, uid=identity.uid, gid=identity.gid)
    try:
        data_options = _data_files(config, fds)
        if config.seccomp:
            fds.append(seccomp_filter_fd())
            data_options += ["--seccomp", str(fds[-1])]
        options = [
            *config.options,
            *config.caps,
            *_spec_options(config, spec),
            *data_options,
            "--remount-ro", "/",
        ]  # fmt: skip
        fds.append(_memfd("securepy-bwrap-args", _nul_join(options)))
        argv = [config.bwrap, "--args", str(fds[-1]), "--", *prefix, *spec.argv]
        if cgroup is not None:
            argv = ["/bin/sh", "-c", _CGROUP_JOIN, "securepy-cgroup", *cgroup.thread_join_files,
                    "--", *argv]  # fmt: skip
        pass_fds = (spec.child_fd, *extra_fds, *fds)
        popen = spawn(lambda: subprocess.Popen(
            argv,
            pass_fds=pass_fds,
            env={},
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        ))
    finally:
        for fd in fds:
            os.close(fd)
    return BubblewrapChild(popen, cgroup, identity)


def _data_files(config: WallConfig, fds: list[int]) -> list[str]:
    """One-line passwd and group, so getpass.getuser() and `id` name the sandbox user."""
    passwd = f"sandbox:x:{config.uid}:{config.gid}:securepy sandbox:{config.workspace}:/bin/sh\n"
    group = f"sandbox:x:{config.gid}:\n"
    options: list[str] = []
    for path, text in (("/etc/passwd", passwd), ("/etc/group", group)):
        fds.append(_memfd("securepy-etc", text.encode()))
        options += ["--perms", "0444", "--ro-bind-data", str(fds[-1]), path]
    return options


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _nul_join(options: Iterable[str]) -> bytes:
    return b"".join(os.fsencode(option) + b"\0" for option in options)


# The worker's main thread and its output forwarder: Limits.processes counts what the code
# starts, so these two come on top (with 64, the code can start 64 threads).
WORKER_THREADS = 2


def create_cgroup(spec: LaunchSpec, *, own_processes: int = 2) -> ChildCgroup | None:
    """The child's memory and pids cgroup, or None where the host offers none.
    ``own_processes``: processes of the sandbox itself that count against the pids limit (the
    outer bubblewrap and its pid 1)."""
    limits = spec.limits
    memory = limits.memory_bytes
    if memory is not None:
        # The tmpfs pages the code writes are charged to the cgroup too: give them their own
        # room on top of the processes' memory.
        workspace = limits.workspace_bytes or 0
        memory += workspace + min(SANDBOX_SHM_BYTES, workspace or SANDBOX_SHM_BYTES)
    processes = limits.processes
    if processes is not None:
        processes += own_processes + WORKER_THREADS
    return create_child_cgroup(_cgroup_support(), memory_bytes=memory, processes=processes)


@functools.cache
def _cgroup_support() -> CgroupSupport:
    support = detect_cgroup_support()
    logger.info("sandbox resource enforcement: %s", support.detail)
    return support


_proven: set[Interpreter] = set()


def _prove_wall(config: WallConfig, interpreter: Interpreter) -> None:
    if interpreter in _proven:
        return
    from .._limits import Limits

    a, b = _socketpair_fds()
    try:
        spec = LaunchSpec(
            interpreter=interpreter,
            argv=(interpreter.executable, "-I", "-S", "-c", "pass"),
            child_fd=b,
            limits=Limits(),
            env={"PATH": "/usr/bin:/bin"},
        )
        child = start_sandbox(config, spec, None)
        try:
            status = child.wait(timeout=30)
            stderr = child.read_startup_error()
        except subprocess.TimeoutExpired:
            status, stderr = -1, "timed out after 30 s"
        finally:
            child.kill()
    finally:
        os.close(a)
        os.close(b)
    if status != 0:
        raise SandboxUnavailableError(diagnose_bwrap_failure(stderr))
    _proven.add(interpreter)


def _socketpair_fds() -> tuple[int, int]:
    import socket

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a.detach(), b.detach()


def kill_sandbox(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the sandbox's pid 1 (the kernel then kills its whole pid namespace) and reap
    the outer bubblewrap."""
    inits = child_pids(popen.pid)
    for init in inits[:1]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signal.SIGKILL)
        try:
            popen.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 1 << 62
