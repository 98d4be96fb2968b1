"""Leaving the template's powers behind: how a forked session (and its pid 1) ends up with no
capability anywhere, no-new-privs and the seccomp filter, prepared once in the template and
applied in each fork with a few kernel calls.

Two identities, after the host's (see ``_launchers/template``):

- **root-drop** (host root): the template is host root inside bubblewrap's namespaces; a
  session becomes the uid and gid the host leased for it alone, with no groups
  (``setresuid`` clears the effective and permitted sets).
- **user** (any other host user): the template is uid 0 of bubblewrap's user namespace, which
  maps only the host user's uid. A session, once its mounts are made, takes a user namespace
  of its own that maps the host user's uid and gid to themselves through the template's 0
  (``/proc/self/uid_map`` reads ``1000 0 1``, as in a user-mode bubblewrap session) and sets
  its own ``user.max_user_namespaces`` to 0, so neither it nor anything it starts can make
  another (``unshare(CLONE_NEWUSER)`` fails with ENOSPC, as under ``bwrap --disable-userns``).
  Its pid, mount, network, IPC, UTS and cgroup namespaces belong to the template's user
  namespace, over which the session has no capability at all.

Kernel rules this relies on (found by experiment, Linux 6.18):

- a process writing its own ``uid_map`` may map one id to its own euid in the parent; mapping
  the parent's uid 0 also needs that the creator held ``CAP_SETFCAP`` in the parent when it
  unshared (``verify_root_map``): the template keeps ``CAP_SETFCAP`` for that alone;
- ``gid_map`` needs ``setgroups`` denied first (bubblewrap already denied it for its own
  namespace, so ``setgroups()`` is refused there and the groups bubblewrap left stay);
- a new user namespace starts with every capability and a full bounding set in it: the
  session empties the bounding set (every capability up to ``cap_last_cap``) afterwards;
- ``/proc/sys/user`` entries are per user namespace, looked up by the opener's namespace: the
  session writes its limit through a directory fd of its fresh ``/proc`` opened before
  ``/proc/sys`` was made read-only.
"""

from __future__ import annotations

import ctypes
import os
import struct

from .syscalls import SockFprog, check, libc, prctl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["PrivilegeDrop", "capability_set", "read_status"]

_CLONE_NEWUSER = 0x10000000
_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SECCOMP_MODE_FILTER = 2
_CAPABILITY_VERSION_3 = 0x20080522

class PrivilegeDrop:
    """Becoming the session's uid/gid with no capability left anywhere, no-new-privs and the
    seccomp filter (see the module docstring for the two modes)."""

    def __init__(self, plan: dict[str, Any], seccomp: bytes) -> None:
        if not seccomp:
            raise OSError("the seccomp filter is required and missing")
        self.user_mode = plan.get("mode") == "user"
        if self.user_mode:
            # A new user namespace hands back a full bounding set: every capability goes.
            with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
                self.bounding_set = list(range(int(f.read()) + 1))
        else:
            # Only what the template still has: each drop is a credential change costing
            # microseconds.
            self.bounding_set = capability_set(read_status(), "CapBnd")
        self.cap_header = ctypes.create_string_buffer(
            struct.pack("=Ii", _CAPABILITY_VERSION_3, 0), 8
        )
        self.cap_data = ctypes.create_string_buffer(24)  # {effective, permitted, inheritable} x2
        self.program = ctypes.create_string_buffer(seccomp, len(seccomp))
        self.fprog = SockFprog(len(seccomp) // 8, ctypes.addressof(self.program))
        self.capset = libc.capset

    def apply(self, uid: int, gid: int, limits_dir: int = -1) -> None:
        """Become ``uid``/``gid`` (never root) with nothing left, then seccomp. In user mode,
        through a user namespace of the session's own, whose limits are set through
        ``limits_dir`` (an fd of a writable ``/proc/sys/user``)."""
        if uid <= 0 or gid <= 0:
            raise OSError(f"refusing to run a session as uid {uid}, gid {gid}")
        if self.user_mode:
            _enter_own_user_namespace(uid, gid, limits_dir)
            self._drop(None, None)
        else:
            self._drop(uid, gid)

    def drop_capabilities(self) -> None:
        """Keep the uid (root, for a reaper), drop everything else, then seccomp."""
        self._drop(None, None)

    def _drop(self, uid: int | None, gid: int | None) -> None:
        for cap in self.bounding_set:
            check(prctl(_PR_CAPBSET_DROP, cap), "prctl(CAPBSET_DROP)")
        check(prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL), "ambient capabilities")
        if not self.user_mode:  # refused in user mode, where bubblewrap denied setgroups
            os.setgroups([])
        if uid is not None and gid is not None:
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)  # clears the effective and permitted sets
        check(self.capset(self.cap_header, self.cap_data), "capset")  # all three sets
        status = read_status()
        if any(f"{name}:\t0000000000000000" not in status for name in ("CapBnd", "CapEff")):
            raise OSError("capabilities are left after the drop")
        # The uid change made the process undumpable, which would make its /proc entries
        # root's; the exec in bubblewrap's path (setpriv) resets this the same way.
        check(prctl(_PR_SET_DUMPABLE, 1), "prctl(SET_DUMPABLE)")
        check(prctl(_PR_SET_NO_NEW_PRIVS, 1), "prctl(NO_NEW_PRIVS)")
        check(
            prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(self.fprog)), "seccomp"
        )


def _enter_own_user_namespace(uid: int, gid: int, limits_dir: int) -> None:
    """A user namespace of this session's own: ``uid``/``gid`` inside are the template's 0
    outside (the host user), and it may hold no further user namespace."""
    if limits_dir < 0:
        raise OSError("no writable /proc/sys/user to limit the session's user namespaces")
    check(libc.unshare(_CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    _write_at(-1, "/proc/self/uid_map", f"{uid} 0 1\n")
    _write_at(-1, "/proc/self/setgroups", "deny")
    _write_at(-1, "/proc/self/gid_map", f"{gid} 0 1\n")
    # Read by the opener's user namespace: this one's limit, 0, as bubblewrap's
    # --disable-userns makes it (there through the parent's limit of 1).
    _write_at(limits_dir, "max_user_namespaces", "0")


def _write_at(directory: int, path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=None if directory < 0 else directory)
    try:
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


def capability_set(status: str, name: str) -> list[int]:
    """The capabilities in one set ("CapBnd", "CapEff", ...) of a /proc/self/status text."""
    for line in status.splitlines():
        if line.startswith(f"{name}:"):
            mask = int(line.split()[1], 16)
            return [cap for cap in range(mask.bit_length()) if mask >> cap & 1]
    raise OSError(f"no {name} line in /proc/self/status")


def read_status() -> str:
    """This process's ``/proc/self/status``."""
    with open("/proc/self/status", encoding="ascii") as f:
        return f.read()
