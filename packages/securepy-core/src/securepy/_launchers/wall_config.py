"""What every bubblewrap sandbox of one interpreter shares: its namespaces, its root filesystem
(system paths, the interpreter and the worker, read-only at their host paths), its /proc masks
and the identity the code runs as (see :mod:`.bubblewrap` for the wall as a whole). Built once
per interpreter; what differs per session (the workspace, /dev, the environment) is added by
:func:`.bubblewrap.start_sandbox`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os

from .._fontcache import SANDBOX_FONT_CACHE, font_cache
from .._interpreter import Interpreter
from ..errors import SandboxUnavailableError
from .bwrap_binary import find_bwrap
from .seccomp import SeccompUnavailable, seccomp_filter_fd

__all__ = [
    "ETC_FILES",
    "PROC_MASKED_DIRS",
    "PROC_MASKED_FILES",
    "PROC_READ_ONLY_DIRS",
    "SANDBOX_SHM_BYTES",
    "SYSTEM_LINKS",
    "WORKSPACE",
    "WallConfig",
    "bind_sources",
    "build_wall_config",
    "setpriv_options",
]

logger = logging.getLogger("securepy")

WORKSPACE = "/workspace"
# The workspace's path when the interpreter itself lives under /workspace.
_SPARE_WORKSPACE = "/securepy-workspace"
SANDBOX_UID = 65534
SANDBOX_SHM_BYTES = 64 * 1024 * 1024
_SETPRIV = ("/usr/bin/setpriv", "/bin/setpriv")
SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
ETC_FILES = (
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
    prefix = (_find_setpriv(), *setpriv_options()) if root else ()
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


def _find_setpriv() -> str:
    for candidate in _SETPRIV:
        if os.access(candidate, os.X_OK):
            return candidate
    raise SandboxUnavailableError(
        "running as root, the sandbox drops to uid 65534 with setpriv, which is missing: "
        "install util-linux (apt install util-linux, dnf install util-linux)"
    )


def setpriv_options(uid: int = SANDBOX_UID, gid: int = SANDBOX_UID) -> tuple[str, ...]:
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
    for name in SYSTEM_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            options += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            options += ["--ro-bind", path, path]
    options += ["--perms", "0755", "--dir", "/etc"]
    return options + _bind_read_only([p for p in ETC_FILES if os.path.exists(p)], made={"/etc"})


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
    return _is_within(path, "/usr") or any(_is_within(path, f"/{name}") for name in SYSTEM_LINKS)


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
