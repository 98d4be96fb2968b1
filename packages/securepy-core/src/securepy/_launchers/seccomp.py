"""The sandbox's seccomp filter: kernel surface the sandboxed code has no business touching.

The filter allows every system call by default and refuses a fixed list with ``EPERM`` (so the
code gets a clean ``OSError``, never a dead process). It is built with libseccomp through the
``pyseccomp`` binding (the ``securepy-core[seccomp]`` extra), compiled once per process to
classic BPF and handed to bubblewrap with ``--seccomp FD``; bubblewrap installs it (with
``PR_SET_NO_NEW_PRIVS``) just before it runs the worker, so it covers every process inside.

Refused, by family:

- looking into other processes: ``ptrace``, ``process_vm_readv/writev``, ``pidfd_getfd``,
  ``kcmp``, ``process_madvise``;
- kernel attack surface with a history of exploits: ``bpf``, ``perf_event_open``,
  ``userfaultfd``, ``io_uring_*``, the key-retention calls;
- namespaces and mounts: ``mount`` and the new mount API, ``umount2``, ``pivot_root``,
  ``chroot``, ``unshare``, ``setns``, ``clone`` with any ``CLONE_NEW*`` flag; ``clone3`` gets
  ``ENOSYS`` because its flags sit in memory a filter cannot read, and glibc then falls back to
  ``clone`` (so threads and fork keep working);
- the machine itself: kernel modules, ``kexec``, ``reboot``, swap, ``acct``, ``quotactl``,
  ``syslog``, ``iopl``/``ioperm``, ``open_by_handle_at``;
- terminal injection: ``ioctl`` with ``TIOCSTI`` or ``TIOCLINUX``;
- sockets of any family but ``AF_UNIX`` (no IPv4/IPv6, netlink, packet or vsock sockets).

Calls from a foreign ABI (32-bit ``int 0x80`` on x86-64, x32) kill the process: only hostile
code makes them, and the filter could not vouch for them.
"""

from __future__ import annotations

import errno
import functools
import os
from typing import Any

__all__ = ["SeccompUnavailable", "compile_filter", "seccomp_filter_fd"]

_CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)
_AF_UNIX = 1
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C

_DENIED = (
    # other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    # kernel surface
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "fanotify_init",
    # namespaces and mounts
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    # the machine
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "iopl",
    "ioperm",
    "open_by_handle_at",
    "lookup_dcookie",
    "uselib",
    "vhangup",
    "nfsservctl",
)


class SeccompUnavailable(Exception):
    """The seccomp binding or the system libseccomp is missing (the message says which)."""


def seccomp_filter_fd() -> int:
    """A fresh memfd holding the compiled filter, rewound to offset 0, for ``--seccomp FD``.

    bubblewrap reads the program from the fd's current offset; a fd left at its end reads as an
    empty program and bubblewrap reports a misleading "CONFIG_SECCOMP" error. The caller owns
    (and must close) the fd.

    Raises:
        SeccompUnavailable: the binding or libseccomp cannot be loaded.
    """
    program = compile_filter()
    fd = os.memfd_create("securepy-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


@functools.cache
def compile_filter() -> bytes:
    """The filter as classic BPF bytes, compiled once per process.

    Raises:
        SeccompUnavailable: the binding or libseccomp cannot be loaded.
    """
    seccomp = _import_binding()
    deny = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    rules.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    for name in _DENIED:
        _add_rule(seccomp, rules, deny, name)
    for flag in _CLONE_NAMESPACE_FLAGS:
        _add_rule(seccomp, rules, deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    _add_rule(seccomp, rules, seccomp.ERRNO(errno.ENOSYS), "clone3")
    for request in (_TIOCSTI, _TIOCLINUX):
        _add_rule(
            seccomp, rules, deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request)
        )
    _add_rule(seccomp, rules, deny, "socket", seccomp.Arg(0, seccomp.NE, _AF_UNIX))
    _add_rule(seccomp, rules, deny, "socketpair", seccomp.Arg(0, seccomp.NE, _AF_UNIX))
    return _export_bpf(rules)


def _import_binding() -> Any:
    try:
        import pyseccomp  # type: ignore[import-untyped]  # the binding ships no types
    except ImportError as exc:
        raise SeccompUnavailable(
            "the seccomp binding is not installed: pip install 'securepy-core[seccomp]' "
            "(it also needs the system libseccomp: apt install libseccomp2, "
            "dnf install libseccomp)"
        ) from exc
    except (OSError, RuntimeError) as exc:
        raise SeccompUnavailable(
            f"the system libseccomp cannot be loaded ({exc}): apt install libseccomp2, "
            "dnf install libseccomp"
        ) from exc
    return pyseccomp


def _add_rule(seccomp: Any, rules: Any, action: int, name: str, *args: Any) -> None:
    number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    if number == -1:  # __NR_SCMP_ERROR: libseccomp does not know the call on this architecture
        return
    rules.add_rule(action, number, *args)


def _export_bpf(rules: Any) -> bytes:
    fd = os.memfd_create("securepy-seccomp-export", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb", closefd=True) as sink:
            rules.export_bpf(sink)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
