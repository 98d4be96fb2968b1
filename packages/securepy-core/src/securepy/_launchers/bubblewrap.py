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
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable

from .._fontcache import SANDBOX_FONT_CACHE, font_cache
from .._interpreter import Interpreter
from .._mounts import target_inside
from ..errors import SandboxUnavailableError
from .base import LaunchSpec, PopenChild, describe_signal_exit
from .cgroups import CgroupSupport, ChildCgroup, create_child_cgroup, detect_cgroup_support
from .identity import Identity, lease_identity
from .procfs import child_pids, read_process_usage
from .seccomp import SeccompUnavailable, seccomp_filter_fd
from .spawner import spawn

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

WORKSPACE = "/workspace"
# The workspace's path when the interpreter itself lives under /workspace.
_SPARE_WORKSPACE = "/securepy-workspace"
SANDBOX_UID = 65534
MIN_BWRAP_VERSION = (0, 8, 0)
SANDBOX_SHM_BYTES = 64 * 1024 * 1024
_SETPRIV = ("/usr/bin/setpriv", "/bin/setpriv")
_SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
    "/etc/mime.types",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
)
# Kernel-global /proc entries that describe the host rather than the sandbox.
PROC_MASKED_FILES = (
    "kcore",
    "keys",
    "key-users",
    "kmsg",
    "kallsyms",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "latency_stats",
    "sysrq-trigger",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "config.gz",
)
PROC_MASKED_DIRS = ("acpi", "asound", "scsi", "driver", "tty", "pressure")
PROC_READ_ONLY_DIRS = ("sys", "irq", "bus", "fs")
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
        if self._worker is not None and _parent_of(self._worker) is not None:
            return self._worker
        inits = child_pids(self._popen.pid)
        if not inits:
            return None
        candidates = child_pids(inits[0])
        if not candidates:
            return None
        self._worker = min(candidates, key=_start_time)
        return self._worker


@dataclasses.dataclass(frozen=True, slots=True)
class WallConfig:
    """The part of the sandbox that is the same for every child of one interpreter.

    Attributes:
        bwrap: path of the bubblewrap binary.
        mode: "user" (unprivileged user namespace) or "root-drop" (bubblewrap as root, the code
            as uid 65534 through setpriv); see the module docstring.
        uid, gid: the ids the code runs as, as seen inside.
        options: bubblewrap options that do not depend on the spec (namespaces, mounts).
        caps: bubblewrap's capability options for the first program inside.
        prefix: argv run inside before the worker's argv (setpriv in root-drop mode).
        seccomp: whether the seccomp filter is applied.
        own_tmp: /tmp is a tmpfs of its own (the interpreter lives under /tmp, so its binds
            need /tmp to be a directory) rather than a link into the workspace.
        workspace: the workspace's path inside: /workspace, unless the interpreter lives
            there (the workspace tmpfs would hide it).
    """

    bwrap: str
    mode: str
    uid: int
    gid: int
    options: tuple[str, ...]
    caps: tuple[str, ...]
    prefix: tuple[str, ...]
    seccomp: bool
    own_tmp: bool = False
    workspace: str = "/workspace"


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


@functools.lru_cache(maxsize=16)
def build_wall_config(interpreter: Interpreter) -> WallConfig:
    """The static configuration for ``interpreter``, not yet proven to start.

    Raises:
        securepy.errors.SandboxUnavailableError: bubblewrap, setpriv or (as root) the seccomp
            binding is missing.
    """
    bwrap = find_bwrap()
    root = os.geteuid() == 0
    seccomp = _seccomp_available(required=root)
    prefix = (_find_setpriv(), *_setpriv_options()) if root else ()
    sources = bind_sources(interpreter)
    own_tmp = any(_is_within(source, "/tmp") for source in sources)
    workspace = WORKSPACE
    if any(_is_within(source, workspace) or _is_within(workspace, source) for source in sources):
        workspace = _SPARE_WORKSPACE
    options = [
        *(_root_drop_namespaces() if root else _user_namespaces()),
        *_system_mounts(),
        # An interpreter checked out under /tmp (CI clones often are) is bound there, so /tmp
        # must be a directory: a private tmpfs, mounted before the binds inside it.
        *(["--perms", "01777", "--size", str(_OWN_TMP_BYTES), "--tmpfs", "/tmp"]
          if own_tmp else []),
        *_bind_read_only(sources, made={"/etc", "/tmp"} if own_tmp else {"/etc"}),
        *_font_cache_bind(interpreter),
        *_proc_mounts(),
        "--chdir", workspace,
    ]  # fmt: skip
    uid, gid = (SANDBOX_UID, SANDBOX_UID) if root else (os.getuid(), os.getgid())
    caps = _ROOT_DROP_CAPS if root else ("--cap-drop", "ALL")
    return WallConfig(
        bwrap, "root-drop" if root else "user", uid, gid, tuple(options), caps, prefix,
        seccomp, own_tmp, workspace,
    )


def _font_cache_bind(interpreter: Interpreter) -> list[str]:
    """matplotlib's font cache, read-only, where the worker looks for it (see _fontcache)."""
    cache = font_cache(interpreter)
    if cache is None:
        return []
    parent = os.path.dirname(SANDBOX_FONT_CACHE)  # made 0755: bubblewrap's default is 0700
    return ["--perms", "0755", "--dir", parent, "--ro-bind", cache, SANDBOX_FONT_CACHE]


def find_bwrap() -> str:
    """The bubblewrap binary, checked to be new enough.

    Raises:
        securepy.errors.SandboxUnavailableError: missing or older than 0.8.0.
    """
    path = _which_bwrap()
    if path is None:
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) is not installed; install it from your distribution "
            "(apt install bubblewrap, dnf install bubblewrap, pacman -S bubblewrap), or pass "
            "sandbox=False to run without a sandbox (explicitly unsafe)"
        )
    version = bwrap_version(path)
    if version < MIN_BWRAP_VERSION:
        raise SandboxUnavailableError(
            f"bubblewrap at {path} is version {'.'.join(map(str, version))}; securepy needs "
            "0.8.0 or newer (--disable-userns, tmpfs sizes): upgrade the bubblewrap package "
            "(Debian 12, Ubuntu 23.04, Fedora 38 and later ship it)"
        )
    return path


@functools.cache
def bwrap_version(path: str) -> tuple[int, ...]:
    """bubblewrap's version as a tuple, (0,) when it cannot be read."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, env={}, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0,)
    numbers = out.split()[-1].split(".") if out.split() else []
    try:
        return tuple(int(n) for n in numbers)
    except ValueError:
        return (0,)


def diagnose_bwrap_failure(stderr: str) -> str:
    """Turn bubblewrap's complaint into a cause and a fix, as one sentence."""
    text = stderr.strip()
    if "uid map" in text or "No permissions to create" in text or "new namespace" in text:
        return _userns_blocked_reason(text)
    if "mount proc" in text or "proc on" in text:
        return (
            f"the sandbox cannot mount a fresh /proc ({text}); inside Docker the default "
            "seccomp and AppArmor profiles refuse it: run the container with "
            "--security-opt seccomp=unconfined --security-opt apparmor=unconfined "
            "--security-opt systempaths=unconfined, or run securepy on the host"
        )
    if "Can't find source path" in text or "source path" in text:
        return (
            f"bubblewrap cannot bind a path the interpreter needs ({text}); make the "
            "interpreter's directories readable, or pass python= an interpreter installed "
            "where bubblewrap can read it"
        )
    if "seccomp" in text.lower():
        return f"bubblewrap could not install the seccomp filter ({text}); run `securepy doctor`"
    return f"bubblewrap failed to start the sandbox ({text or 'no message'}); run `securepy doctor`"


def _userns_blocked_reason(text: str) -> str:
    apparmor = _read_sysctl("kernel/apparmor_restrict_unprivileged_userns")
    if apparmor == "1":
        return (
            f"user namespaces are restricted by AppArmor ({text}): allow them with "
            "`sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0` (persist it in "
            "/etc/sysctl.d), or install an AppArmor profile granting bwrap `userns`"
        )
    if _read_sysctl("kernel/unprivileged_userns_clone") == "0":
        return (
            f"unprivileged user namespaces are disabled ({text}): "
            "`sudo sysctl kernel.unprivileged_userns_clone=1`"
        )
    if _read_sysctl("user/max_user_namespaces") == "0":
        return (
            f"user namespaces are disabled ({text}): `sudo sysctl user.max_user_namespaces=15000`"
        )
    return (
        f"the sandbox cannot create its namespaces ({text}); inside a container, run it with "
        "--security-opt seccomp=unconfined (Docker's default profile refuses namespaces), or "
        "run securepy on the host"
    )


def _read_sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/{name}", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _which_bwrap() -> str | None:
    for candidate in ("/usr/bin/bwrap", "/usr/local/bin/bwrap"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("bwrap")


def _find_setpriv() -> str:
    for candidate in _SETPRIV:
        if os.access(candidate, os.X_OK):
            return candidate
    raise SandboxUnavailableError(
        "running as root, the sandbox drops to uid 65534 with setpriv, which is missing: "
        "install util-linux (apt install util-linux, dnf install util-linux)"
    )


def _setpriv_options(uid: int = SANDBOX_UID, gid: int = SANDBOX_UID) -> tuple[str, ...]:
    return (
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--inh-caps=-all",
        # An empty bounding set as well: nothing the code runs can ever regain a capability.
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    )


def _seccomp_available(*, required: bool) -> bool:
    try:
        fd = seccomp_filter_fd()
    except SeccompUnavailable as exc:
        if required:
            raise SandboxUnavailableError(
                f"running as root, the sandbox needs its seccomp filter, and {exc}"
            ) from exc
        logger.info("seccomp layer off: %s", exc)
        return False
    os.close(fd)
    return True


def _user_namespaces() -> list[str]:
    return ["--unshare-user", "--disable-userns", *_common_namespaces()]


def _root_drop_namespaces() -> list[str]:
    return _common_namespaces()


# setpriv needs these to switch to 65534 and empty the bounding set; the switch then clears
# every capability.
_ROOT_DROP_CAPS = (
    "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
    "--cap-add", "CAP_SETPCAP",
)  # fmt: skip


def _common_namespaces() -> list[str]:
    return [
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--hostname", "sandbox",
        "--die-with-parent", "--new-session",
    ]  # fmt: skip


def _system_mounts() -> list[str]:
    options = ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            options += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            options += ["--ro-bind", path, path]
    options += ["--perms", "0755", "--dir", "/etc"]
    return options + _bind_read_only([p for p in _ETC_FILES if os.path.exists(p)], made={"/etc"})


def _bind_read_only(sources: list[str], *, made: set[str]) -> list[str]:
    """``--ro-bind`` each source at its own path, after creating the directories leading to
    it empty with mode 0755: bubblewrap would make them 0700 (root-owned in root-drop mode,
    so uid 65534 could not get through them)."""
    options: list[str] = []
    for source in sources:
        for parent in _ancestors(source):
            if parent not in made and not _under_system_dir(parent):
                options += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        options += ["--ro-bind", source, source]
    return options


# Size of /tmp when it has to be a tmpfs of its own (the default workspace size): the memory
# cgroup also counts its pages.
_OWN_TMP_BYTES = 128 * 1024 * 1024


def bind_sources(interpreter: Interpreter) -> list[str]:
    """The interpreter's roots and the worker's package dir, to bind at their host paths."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    roots = [*interpreter.roots, package_dir, os.path.realpath(package_dir)]
    kept: list[str] = []
    for path in sorted(dict.fromkeys(roots)):
        if _under_system_dir(path) or any(_is_within(path, k) for k in kept):
            continue
        if not os.path.exists(path):
            continue
        kept.append(path)
    return kept


def _under_system_dir(path: str) -> bool:
    return _is_within(path, "/usr") or any(_is_within(path, f"/{name}") for name in _SYSTEM_LINKS)


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _proc_mounts() -> list[str]:
    options = ["--proc", "/proc"]
    for name in PROC_READ_ONLY_DIRS:
        if os.path.isdir(f"/proc/{name}"):
            # The sysctl tree is one global tree (net/ipc/uts entries follow the reader's
            # namespaces), so binding the host's copy read-only over the fresh one is exact.
            options += ["--ro-bind", f"/proc/{name}", f"/proc/{name}"]
    for name in PROC_MASKED_FILES:
        if os.path.exists(f"/proc/{name}"):
            options += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    for name in PROC_MASKED_DIRS:
        if os.path.isdir(f"/proc/{name}"):
            options += ["--perms", "0555", "--size", "4096", "--tmpfs", f"/proc/{name}"]
    return options


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
        prefix = (prefix[0], *_setpriv_options(identity.uid, identity.gid))
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


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 1 << 62
