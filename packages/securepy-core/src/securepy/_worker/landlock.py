"""The Landlock wall, from inside: the first thing a worker started by
``_launchers/landlock.py`` does, before it imports or runs anything else.

The host starts the interpreter already as the session's uid (when it is root), in its own
session, with the session's workspace as cwd; this module then, in order:

1. moves the process into its cgroups (the host passes the join files open);
2. becomes a child subreaper and forks: the parent stays outside the wall as the session's
   keeper (``keeper.py``: it holds every process the code starts in its tree, even after the
   worker's death, reaps orphans, and kills what is left when the worker ends; there is no
   pid namespace to end), the child goes on to be the worker;
3. sets no-new-privs, and ``RLIMIT_FSIZE`` at most the workspace's size (one file never
   outgrows it; the host bounds the total);
4. restricts itself with Landlock: read and execute beneath the interpreter, its packages and
   the system paths Python needs, read-write beneath the workspace only, nothing else (no
   ``/proc``, no ``/sys``, no home, no ``/tmp``; no rename or link between two directories,
   even in the workspace: the REFER right is handled, never granted); TCP bind and connect
   denied (ABI 4); signals and abstract unix sockets scoped to the session (ABI 6); the host
   directories of the session's mounts, read-only or read-write;
5. installs the seccomp allow list (Landlock variant: no ``socket()`` at all, AF_UNIX
   ``SOCK_STREAM`` ``socketpair`` only, no SysV IPC, no inotify, and no ``memfd_create``
   where no memory cgroup bounds its pages).

Only then does the ordinary worker start. Any failure ends the process before the code runs.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import struct
import sys

from .syscalls import SockFprog, check, libc, prctl

__all__ = ["KEEPER", "MOUNTS", "enter"]

# True in a worker that has a keeper above it (one more process of the session's uid).
KEEPER = False

# Mounts shown by a link in the workspace: relative path -> (host path, writable). Read by
# files.py, so session.files walks them from the host path, never through the link.
MOUNTS: dict[str, tuple[str, bool]] = {}

_SYS_CREATE_RULESET = 444  # the same number on every architecture (added after the split)
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# Filesystem access rights (linux/landlock.h) and the ABI that introduced each.
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1, 2, 4, 8
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | 1 << 14 | 1 << 15  # + truncate, ioctl_dev
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2

def enter() -> None:
    """Build the wall around this process from ``sys.argv[3]`` (the plan's fd) and
    ``sys.argv[4:]`` (cgroup join files), then leave ``sys.argv`` as the worker expects it."""
    plan_fd, *join_fds = (int(a) for a in sys.argv[3:])
    del sys.argv[3:]
    with os.fdopen(plan_fd, "rb") as f:
        data = f.read()
    header, _, seccomp = data.partition(b"\n")
    plan = json.loads(header)
    for fd in join_fds:  # first, so everything this process becomes is counted
        os.write(fd, b"0")
        os.close(fd)
    check(prctl(_PR_SET_CHILD_SUBREAPER, 1), "prctl(PR_SET_CHILD_SUBREAPER)")
    worker = os.fork()
    if worker:
        from .keeper import keep

        keep(worker, int(sys.argv[2]))
    global KEEPER
    KEEPER = True
    check(prctl(_PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)")
    cap = plan.get("file_size_cap")
    if cap is not None:  # the worker's own limits only lower it further
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
    for inside, (host_path, writable) in (plan.get("mounts") or {}).items():
        MOUNTS[inside] = (host_path, bool(writable))
    restrict(plan["read_only"], plan["read_write"], plan["devices"])
    program = ctypes.create_string_buffer(seccomp, len(seccomp))
    fprog = SockFprog(len(seccomp) // 8, ctypes.addressof(program))
    check(prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog)), "seccomp")


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is missing or disabled."""
    version = libc.syscall(
        _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
    )
    return max(int(version), 0)


def restrict(read_only: list[str], read_write: list[str], devices: list[str]) -> None:
    """Restrict this process (and everything it starts) to these paths, with TCP and, where
    the kernel scopes them, signals and abstract sockets kept inside the session."""
    abi = abi_version()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    handled = (1 << 13) - 1
    if abi >= 2:
        handled |= _REFER
    if abi >= 3:
        handled |= _TRUNCATE
    if abi >= 5:
        handled |= _IOCTL_DEV
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("=QQQ", handled, net, scoped)[: 24 if abi >= 6 else 16 if abi >= 4 else 8]
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = int(
        libc.syscall(_SYS_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    )
    check(-1 if ruleset < 0 else 0, "landlock_create_ruleset")
    try:
        read = _EXECUTE | _READ_FILE | _READ_DIR
        for path in read_only:
            _allow(ruleset, path, read & handled)
        for path in devices:
            _allow(ruleset, path, (_READ_FILE | _WRITE_FILE | _IOCTL_DEV) & handled)
        # Everything but REFER: a rename or link between two directories fails with EXDEV
        # (within one directory it needs no REFER and works; shutil.move falls back to a
        # copy). A tree moved across the directories the host's workspace walk has listed
        # and has still to list would never be measured.
        for path in read_write:
            _allow(ruleset, path, handled & ~_REFER)
        check(
            int(libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0))),
            "landlock_restrict_self",
        )
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # a system path this host lacks
    try:
        if not os.path.isdir(path):
            access &= _FILE_RIGHTS  # directory rights on a file are refused
        rule = struct.pack("=Qi", access, fd)
        buffer = ctypes.create_string_buffer(rule, len(rule))
        result = int(
            libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, buffer, ctypes.c_uint32(0))
        )
        check(result, f"landlock_add_rule {path}")
    finally:
        os.close(fd)
