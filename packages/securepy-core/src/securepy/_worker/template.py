"""The template: a sandboxed interpreter, started once, that forks isolated sessions.

A session started by bubblewrap pays for the sandbox's set-up and a fresh interpreter every
time (about 30 ms). The template pays them once: it runs inside bubblewrap with the worker
already imported, and for each session it forks a child that gets namespaces of its own and
becomes an ordinary worker, ready in a few milliseconds.

Per session, the forked child:

- moves itself into its own memory and pids cgroup (the host passes the files to write);
- lives in a new pid namespace whose pid 1 is a reaper the template forked ahead of time
  (``_serve_as_reaper``): orphans of the code are reparented to it and reaped, as bubblewrap's
  pid 1 does, while the code's own ``wait()`` and ``subprocess`` see only their own children
  (the worker is pid 2, the template's child, so the template still reports its exit); takes
  new mount, network (made ahead of time by the template), IPC, UTS and cgroup namespaces: it
  sees no other session and no template;
- mounts its own workspace and ``/dev/shm`` tmpfs (sizes from the host), its own ``/tmp`` when
  the sandbox has one, and a fresh ``/proc`` with the same read-only and masked entries as
  bubblewrap's (its loopback stays down: seccomp refuses every socket family but AF_UNIX);
- drops its powers (``privileges.py``): as root, to the uid and gid the host leased for this
  session alone (``_launchers/identity``) with no groups; as any other host user, into a user
  namespace of its own mapping the host user's uid, which can make no further one. Either way
  it then empties every capability set and the bounding set, sets no-new-privs, installs the
  seccomp filter, reseeds the random generators the fork copied (``random`` does so itself at
  fork; ``numpy.random``'s global state when a preload imported it), and only then serves the
  socket the host passed in.

What a fork cannot renew, and sessions of one template therefore share: the str hash secret
(``PYTHONHASHSEED``, fixed when the interpreter started) and the address-space layout (ASLR
positions of the interpreter, its libraries and its heap). Neither is a secret a tenant can
use against another here (no shared memory, no way to read another session's addresses), but
code relying on their being unpredictable should use ``template=False`` sessions.

The template itself keeps the capabilities it needs for that: host root inside bubblewrap's
namespaces (root-drop mode), or uid 0 of bubblewrap's user namespace with ``CAP_SYS_ADMIN``,
``CAP_SETPCAP`` and ``CAP_SETFCAP`` over that namespace only (user mode, any other host user).
It never runs sandboxed code and reads nothing but the host's control socket; sessions cannot
see it (another pid namespace), signal it, reach its files (another mount namespace) or talk
to it (another network namespace), and in user mode hold no capability in its user namespace.

In user mode every namespace a session has, its user namespace apart, is made while the session
is still in the template's user namespace, and its own user namespace comes last. The kernel
requires that order for the fresh ``/proc``: mounting proc for a pid namespace needs
``CAP_SYS_ADMIN`` in the user namespace owning it, and a mount namespace made together with (or
after) a new user namespace inherits the template's mounts *locked*, where the kernel then
refuses a new proc mount unless some proc mount is fully visible (``mnt_too_revealing``): the
template's ``/proc``, masked like every session's, is not. Made in that order, the masks are
the template's own unlocked mounts, the mount is allowed, and the session ends with no
capability over any of its namespaces.

Control messages are JSON objects, one per SOCK_SEQPACKET message:

    host -> template   configure (plan, path, preload)           once
    template -> host   ready | error (message)                   after one trial session
    host -> template   spawn (workspace_bytes, shm_bytes, cgroups, [uid, gid as root])
                       + the session socket's fd and the cgroups' join files
    template -> host   spawned (pid, reaper) + pidfds of the session and of its reaper
                       | spawn_failed (message)
    template -> host   exited (pid, status, cpu_seconds)         when a session ends
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import _socket
import contextlib
import os
import select
import sys

from . import protocol
from .control import receive_control, send_control
from .privileges import PrivilegeDrop, capability_set, read_status
from .session_mounts import MS_PRIVATE, MS_REC, isolate_mounts, prepare_proc_masks
from .syscalls import check, libc, mount, prctl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["serve_template"]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWCGROUP = 0x02000000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_NAMESPACES = (
    _CLONE_NEWNS | _CLONE_NEWCGROUP | _CLONE_NEWUTS | _CLONE_NEWIPC | _CLONE_NEWPID | _CLONE_NEWNET
)
_PR_CAPBSET_DROP = 24



def serve_template(control_fd: int, seccomp_fd: int) -> None:
    """Serve spawn requests on ``control_fd`` until the host hangs up."""
    control = _socket.socket(fileno=control_fd)
    seccomp = _read_all(seccomp_fd)
    config = receive_control(control)[0]
    if config.get("kind") != "configure":
        raise SystemExit("securepy template: expected a configure message first")
    try:
        template = _Template(control, config, seccomp)
    except BaseException as exc:  # reported to the host, then the template exits
        send_control(control, {"kind": "error", "message": f"{type(exc).__name__}: {exc}"[:2000]})
        raise SystemExit(1) from None
    send_control(control, {"kind": "ready"})
    template.serve_forever()


class _Template:
    def __init__(self, control: Any, config: dict[str, Any], seccomp: bytes) -> None:
        self.control = control
        self.plan = config["plan"]
        sys.path[:] = [p for p in config["path"] if isinstance(p, str)]
        if config.get("preload"):
            from .display import configure_matplotlib

            # Before the preloads: matplotlib reads its backend and font cache at import.
            configure_matplotlib(self.plan.get("font_cache"))
        for module in config.get("preload") or ():
            try:
                __import__(module)
            except BaseException as exc:
                raise ImportError(f"preload of {module!r} failed: {exc}") from None
        if config.get("preload"):
            from .display import warm_matplotlib

            warm_matplotlib()  # once here rather than at each session's first figure
        if len(os.listdir("/proc/self/task")) > 1:
            # A fork keeps only the forking thread: a lock another thread held stays locked
            # forever in every session.
            raise ImportError(
                "a preload module started a thread, and a template that runs "
                "threads cannot fork sessions safely; preload it in the code "
                "instead, or use SessionPool(template=False)"
            )
        import _sitebuiltins  # noqa: F401  # what every session would load for itself

        from .runner import Runner
        from .session import serve

        Runner({}).warm_up()
        self.serve_session = serve
        # The template itself never needs more than bubblewrap left it: empty the rest of its
        # bounding set once, so each session has only those few to drop.
        status = read_status()
        effective = capability_set(status, "CapEff")
        for cap in capability_set(status, "CapBnd"):
            if cap not in effective:
                check(prctl(_PR_CAPBSET_DROP, cap), "prctl(CAPBSET_DROP)")
        self.privileges = PrivilegeDrop(self.plan, seccomp)
        # Once here rather than per session: a session's mounts are copies of these, private
        # too, so nothing a session mounts reaches the template or another session.
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        prepare_proc_masks(self.plan)
        self.own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.own_net_namespace = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.next_net_namespace = -1
        self.next_reaper: tuple[int, int] | None = None  # (pid namespace fd, pid)
        self.silent_exits: set[int] = set()  # reapers the host never heard of
        self.wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.set_wakeup_fd(wake_write)
        _signal.signal(_signal.SIGCHLD, lambda signum, frame: None)
        # What a session must not keep of the template.
        self.private_fds = (
            control.fileno(),
            self.wake_read,
            wake_write,
            self.own_pid_namespace,
            self.own_net_namespace,
        )
        self._prove_isolation()

    def serve_forever(self) -> None:
        control_fd = self.control.fileno()
        while True:
            # The next session's network namespace is made once the template is idle (no
            # request for 2 ms): made right after a fork, it would compete with that session
            # for the CPU while it starts.
            ready = self.next_net_namespace >= 0 and self.next_reaper is not None
            idle = None if ready else 0.002
            readable, _, _ = select.select([control_fd, self.wake_read], [], [], idle)
            if not readable:
                if self.next_net_namespace < 0:
                    self._prepare_net_namespace()
                elif self.next_reaper is None:
                    try:
                        self.next_reaper = self._make_reaper()
                    except OSError:  # the next start makes one, or says why it cannot
                        self.next_reaper = (-1, 0)
            if self.wake_read in readable:
                while len(os.read(self.wake_read, 4096)) == 4096:
                    pass
                self._report_exits()
            if control_fd in readable:
                message, fds = receive_control(self.control)
                if not message:
                    os._exit(0)  # the host hung up: its sessions die with our pid namespace
                if message.get("kind") == "spawn" and len(fds) == 1 + message.get("cgroups", 0):
                    self._spawn(message, fds[0], fds[1:])
                else:
                    for fd in fds:
                        os.close(fd)
                    send_control(self.control, {"kind": "spawn_failed", "message": "bad request"})

    def _spawn(self, message: dict[str, Any], session_fd: int, cgroup_fds: list[int]) -> None:
        """Fork a session onto ``session_fd``, in the cgroups whose join files are
        ``cgroup_fds``, and tell the host its pid (with a pidfd).

        The fork happens with a new pid namespace set for the template's children, so the
        session is pid 1 of its own namespace; the template then goes back to its own
        namespace for children (setns), ready for the next. One fork, no go-between process.
        """
        net, self.next_net_namespace = self.next_net_namespace, -1  # one session's only
        reaper_namespace, reaper = -1, 0
        pidfds: list[int] = []
        try:
            # One session's only too: made now (a second fork) if none was made while idle.
            prepared, self.next_reaper = self.next_reaper, None
            if prepared is not None and prepared[0] >= 0:
                reaper_namespace, reaper = prepared
            else:
                reaper_namespace, reaper = self._make_reaper()
            check(libc.setns(reaper_namespace, _CLONE_NEWPID), "setns(CLONE_NEWPID)")
            if net >= 0:
                check(libc.setns(net, _CLONE_NEWNET), "setns(CLONE_NEWNET)")
            try:
                pid = os.fork()
                if pid == 0:
                    self._become_session(message, session_fd, cgroup_fds, net, reaper_namespace)
            finally:
                check(libc.setns(self.own_pid_namespace, _CLONE_NEWPID), "setns(CLONE_NEWPID)")
                check(libc.setns(self.own_net_namespace, _CLONE_NEWNET), "setns(CLONE_NEWNET)")
            pidfds = [os.pidfd_open(pid), os.pidfd_open(reaper)]
            send_control(self.control, {"kind": "spawned", "pid": pid, "reaper": reaper}, pidfds)
        except OSError as exc:
            if reaper:
                os.kill(reaper, _signal.SIGKILL)  # its pid namespace, and anything in it, ends
                self.silent_exits.add(reaper)
            send_control(
                self.control, {"kind": "spawn_failed", "message": f"{type(exc).__name__}: {exc}"}
            )
        finally:
            for fd in (
                session_fd,
                *cgroup_fds,
                *pidfds,
                *(fd for fd in (net, reaper_namespace) if fd >= 0),
            ):
                os.close(fd)

    def _make_reaper(self) -> tuple[int, int]:
        """Fork the next session's pid 1 into a new pid namespace; return that namespace's fd
        and its pid. Made while the template is idle: on a start, only the session's own fork
        remains to be paid."""
        check(libc.unshare(_CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        try:
            pid = os.fork()
            if pid == 0:
                self._serve_as_reaper()
            # Our own link to the namespace the fork made (the reaper's /proc entries may
            # already be out of reach once it dropped its capabilities).
            try:
                namespace = os.open("/proc/self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                os.kill(pid, _signal.SIGKILL)
                self.silent_exits.add(pid)
                raise
        finally:
            check(libc.setns(self.own_pid_namespace, _CLONE_NEWPID), "setns(CLONE_NEWPID)")
        return namespace, pid

    def _serve_as_reaper(self) -> None:
        """pid 1 of a session's namespace: reap whatever the kernel reparents here, forever.
        Runs no untrusted code and holds nothing of the template: no fds but /dev/null, no
        capabilities (it stays uid 0, like bubblewrap's pid 1: no session uid can signal or
        read it, and the template can still end it), the seccomp filter. Its death ends the
        namespace, which is how the host ends a session. Never returns."""
        try:
            _signal.set_wakeup_fd(-1)
            _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGCHLD})
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # blocked: still queued
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 1 << 20)
            self.privileges.drop_capabilities()
            while True:
                _signal.sigwait({_signal.SIGCHLD})
                with contextlib.suppress(ChildProcessError):
                    while os.waitpid(-1, os.WNOHANG)[0]:
                        pass
        finally:
            os._exit(1)

    def _prepare_net_namespace(self) -> None:
        """Make the next session's network namespace now, while nobody waits: creating one is
        the dearest part of a session's isolation (about 0.4 ms). It is empty, and only this
        fd refers to it until one session is forked into it."""
        if libc.unshare(_CLONE_NEWNET) != 0:
            return  # the session will make its own
        try:
            self.next_net_namespace = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            check(libc.setns(self.own_net_namespace, _CLONE_NEWNET), "setns(CLONE_NEWNET)")

    def _become_session(
        self,
        message: dict[str, Any],
        session_fd: int,
        cgroup_fds: list[int],
        net: int,
        reaper_namespace: int,
    ) -> None:
        """In the fork: join the session's cgroups, forget the template's fds and signals, take
        the namespaces the fork did not bring, isolate, drop privileges, then serve. Never
        returns."""
        try:
            os.close(reaper_namespace)
            self._isolate_self(message, cgroup_fds, net)
            _reseed()
        except BaseException as exc:
            _report_start_failure(session_fd, exc)
            os._exit(1)
        # As a worker started by bubblewrap sees it: the socket's fd is the last argument.
        sys.argv[2:] = [str(session_fd)]
        try:
            self.serve_session(session_fd, warmed=True)
        finally:
            os._exit(0)

    def _isolate_self(self, message: dict[str, Any], cgroup_fds: list[int], net: int) -> None:
        """Everything between the fork and the session's first byte (see the module
        docstring), in this order. ``net``: the fd of the network namespace made ahead for
        this session, which the fork already entered, or -1 to make one now."""
        # First, so whatever this process becomes is counted and limited. It moves itself
        # ("0"): a single thread moving itself skips the kernel's global lock that makes a
        # move by the host wait for an RCU grace period (~10 ms on an idle machine).
        for fd in cgroup_fds:
            os.write(fd, b"0")
            os.close(fd)
        _signal.set_wakeup_fd(-1)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        for fd in self.private_fds:
            os.close(fd)
        if self.next_reaper is not None and self.next_reaper[0] >= 0:
            os.close(self.next_reaper[0])
        namespaces = _NAMESPACES & ~_CLONE_NEWPID
        if net >= 0:
            os.close(net)
            namespaces &= ~_CLONE_NEWNET
        if libc.unshare(namespaces) != 0:
            # As bubblewrap's --unshare-cgroup-try: kernels without cgroup namespaces.
            check(libc.unshare(namespaces & ~_CLONE_NEWCGROUP), "unshare")
        limits_dir = isolate_mounts(message, self.plan)
        try:
            self.privileges.apply(
                int(message.get("uid", self.plan["uid"])),
                int(message.get("gid", self.plan["gid"])),
                limits_dir,
            )
        finally:
            if limits_dir >= 0:
                os.close(limits_dir)

    def _prove_isolation(self) -> None:
        """Fork one session that isolates itself and leaves, before serving any: a host that
        refuses a step fails here, when the template starts (and the host can start sessions
        with bubblewrap instead), not in every session."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        check(libc.unshare(_CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(read_end)
                    self._isolate_self({}, [], -1)
                except BaseException as exc:
                    os.write(write_end, f"{type(exc).__name__}: {exc}".encode()[:4000])
                    os._exit(1)
                os._exit(0)
        finally:
            check(libc.setns(self.own_pid_namespace, _CLONE_NEWPID), "setns(CLONE_NEWPID)")
        os.close(write_end)
        try:
            _, status = os.waitpid(pid, 0)
            error = os.read(read_end, 4096).decode(errors="replace")
        finally:
            os.close(read_end)
        if status != 0:
            raise OSError(f"a forked session cannot isolate itself here: {error or status}")

    def _report_exits(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.silent_exits:
                self.silent_exits.discard(pid)
                continue
            send_control(
                self.control,
                {
                    "kind": "exited",
                    "pid": pid,
                    "status": status,
                    "cpu_seconds": usage.ru_utime + usage.ru_stime,
                },
            )


def _reseed() -> None:
    """Fresh randomness for this session: a fork copies every generator's state. ``random``
    reseeds its global generator itself at fork (``os.register_at_fork``); numpy's legacy
    global ``RandomState`` (``numpy.random.rand``, ``numpy.random.seed``...) does not. Only what
    is already imported: a module imported later seeds itself from the OS."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _report_start_failure(session_fd: int, exc: BaseException) -> None:
    frame = protocol.encode_frame(
        {
            "kind": "error",
            "type": type(exc).__name__,
            "traceback": "",
            "message": f"the session could not isolate itself: {exc}"[:2000],
        }
    )
    with contextlib.suppress(OSError):
        os.write(session_fd, frame)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)
