"""Reproduce a default container on this machine: Docker's default capability set and its
default seccomp profile (tests/data/docker-default-seccomp.json), applied to this process.

Run as ``python default_container.py SCRIPT``: the script then runs with what a process in
``docker run`` (no ``--privileged``, no ``--security-opt``) would have: no ``CAP_SYS_ADMIN``, so
the profile refuses ``unshare``, ``clone`` with namespace flags, ``setns`` and ``mount``, while
``seccomp``, ``prctl`` and the ``landlock_*`` calls stay allowed. Needs root (as in a container).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import pathlib
import sys

PROFILE = pathlib.Path(__file__).parent.parent / "data" / "docker-default-seccomp.json"
# Docker's default capabilities (moby's oci/caps/defaults.go), as capability numbers.
DEFAULT_CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}  # fmt: skip
_OPS = {
    "SCMP_CMP_NE": "NE",
    "SCMP_CMP_LT": "LT",
    "SCMP_CMP_LE": "LE",
    "SCMP_CMP_EQ": "EQ",
    "SCMP_CMP_GE": "GE",
    "SCMP_CMP_GT": "GT",
    "SCMP_CMP_MASKED_EQ": "MASKED_EQ",
}


def enter_default_container() -> None:
    """Drop to Docker's default capabilities, then install Docker's default profile."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    keep = set(DEFAULT_CAPS.values())
    for cap in range(64):
        if cap not in keep and libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            if ctypes.get_errno() == errno.EINVAL:
                break  # past the last capability this kernel knows
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
    mask = sum(1 << cap for cap in keep)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)(
        mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, mask >> 32, mask >> 32, mask >> 32
    )
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    _install_profile()


def _install_profile() -> None:
    import pyseccomp as sc  # type: ignore[import-untyped]

    profile = json.loads(PROFILE.read_text())
    rules = sc.SyscallFilter(sc.ERRNO(profile.get("defaultErrnoRet", errno.EPERM)))
    caps = set(DEFAULT_CAPS)
    for entry in profile["syscalls"]:
        includes, excludes = entry.get("includes", {}), entry.get("excludes", {})
        if includes.get("caps") and not set(includes["caps"]) <= caps:
            continue
        if includes.get("arches") and "amd64" not in includes["arches"]:
            continue
        if excludes.get("caps") and set(excludes["caps"]) <= caps:
            continue
        if excludes.get("arches") and "amd64" in excludes["arches"]:
            continue
        if entry["action"] == "SCMP_ACT_ALLOW":
            action = sc.ALLOW
        elif entry["action"] == "SCMP_ACT_ERRNO":
            action = sc.ERRNO(entry.get("errnoRet", errno.EPERM))
        else:
            continue
        args = [
            sc.Arg(
                a["index"],
                getattr(sc, _OPS[a["op"]]),
                a["value"],
                *([a.get("valueTwo", 0)] if a["op"] == "SCMP_CMP_MASKED_EQ" else []),
            )
            for a in entry.get("args") or []
        ]
        for name in entry["names"]:
            number = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if number < 0:
                continue
            with contextlib.suppress(OSError):  # a duplicate of the default action
                rules.add_rule(action, number, *args)
    rules.load()


if __name__ == "__main__":
    enter_default_container()
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    exec(compile(pathlib.Path(script).read_text(), script, "exec"), {"__name__": "__main__"})
