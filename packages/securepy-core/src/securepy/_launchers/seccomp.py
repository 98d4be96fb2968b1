"""The sandbox's seccomp filter: an allow list of the system calls Python code needs.

Default-deny. Every call not listed below is refused with ``ENOSYS`` ("this kernel has no such
call"), so a library probing a call newer than the list falls back as it would on an older
kernel, and calls the kernel gains later (``memfd_secret``, ``cachestat``, ``statmount``,
``listmount``, ``mseal``, the ``lsm_*`` family, ...) never reach it from the sandbox. Calls the
sandbox refuses on purpose get ``EPERM`` instead (a clean ``PermissionError``, never a dead
process): they are listed in :data:`_REFUSED` so tests and readers see them named.

Provenance of the list: it started from Docker's default profile (moby/profiles
``seccomp/default.json``, the allow list most Linux software is tested under; a copy is in the
test data) and removed what that profile allows but a Python sandbox has no business with:
SysV message queues and POSIX message queues (a per-uid kernel budget, see issue 14), legacy
AIO and io_uring, ``seccomp`` and ``landlock_*`` (the code cannot narrow or probe the wall
itself), ``ioprio_set``, ``process_mrelease``, ``name_to_handle_at``, ``pidfd_getfd``,
``get_mempolicy``-family calls, and the obsolete ones. What remains was checked against
CPython 3.11-3.13 and its standard library, the test suite and the examples (numpy, pandas and
matplotlib included), run under this filter.

Calls with a dual use are allowed only with safe arguments (argument checks):

- ``clone`` without any ``CLONE_NEW*`` flag (threads, fork, ``vfork``/``posix_spawn``);
  ``clone3`` is ``ENOSYS`` because its flags sit in memory a filter cannot read, and glibc then
  falls back to ``clone``;
- ``socket`` only for ``AF_UNIX`` (and only in the namespace wall: the Landlock wall shares the
  host's abstract socket namespace and filesystem sockets, so there only ``socketpair`` with
  ``AF_UNIX`` and ``SOCK_STREAM`` is allowed: a datagram end reaches any socket on disk with
  ``sendto`` or ``connect``), ``socketpair`` only for ``AF_UNIX``;
- ``ioctl`` with any request but ``TIOCSTI`` and ``TIOCLINUX`` (terminal injection);
- ``personality`` with the values Docker allows (query, ``PER_LINUX``, ``PER_LINUX32``,
  ``UNAME26``);
- ``prctl`` with the options CPython, glibc, ``setpriv`` and common libraries use (names,
  dumpable, no-new-privs, capability bounding/ambient drops, THP, speculation, VMA names, ...);
  never ``PR_SET_MM``, ``PR_SET_PTRACER`` or ``PR_SET_SECCOMP``;
- ``prlimit64``, ``sched_set*`` and ``setpriority`` only on the caller itself (pid 0, and
  ``PRIO_PROCESS`` for ``setpriority``): under the Landlock wall without root, host processes
  share the sandbox's uid.

The Landlock wall also refuses ``inotify_init``/``inotify_init1`` (watches there see the host's
own directories), ``bind`` (a name there is in the host's abstract namespace or on disk) and,
for a session without a memory cgroup, ``memfd_create`` (pages written and never mapped count
against no rlimit).

Calls from a foreign ABI (32-bit ``int 0x80`` on x86-64, x32) kill the process: only hostile
code makes them, and the filter could not vouch for them.
"""

from __future__ import annotations

import errno
import functools
import os
from typing import Any

__all__ = ["ALLOWED", "REFUSED", "SeccompUnavailable", "compile_filter", "seccomp_filter_fd"]

_CLONE_NAMESPACE_MASK = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
_AF_UNIX = 1
_SOCK_STREAM = 1
_SOCK_FLAGS = 0o2000000 | 0o4000  # SOCK_CLOEXEC | SOCK_NONBLOCK, or-ed into the type
_PRIO_PROCESS = 0
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C
# personality(2): query (0xffffffff), PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
_PRCTL_OPTIONS = (
    1, 2,  # PR_SET/GET_PDEATHSIG
    3, 4,  # PR_GET/SET_DUMPABLE
    7, 8,  # PR_GET/SET_KEEPCAPS (setpriv)
    15, 16,  # PR_SET/GET_NAME (thread names)
    21,  # PR_GET_SECCOMP
    23, 24,  # PR_CAPBSET_READ/DROP (setpriv empties the bounding set)
    27, 28,  # PR_GET/SET_SECUREBITS
    29, 30,  # PR_SET/GET_TIMERSLACK
    37,  # PR_GET_CHILD_SUBREAPER (not SET: the Landlock wall's worker is the subreaper)
    38, 39,  # PR_SET/GET_NO_NEW_PRIVS
    40,  # PR_GET_TID_ADDRESS
    41, 42,  # PR_SET/GET_THP_DISABLE
    47,  # PR_CAP_AMBIENT
    52, 53,  # PR_GET/SET_SPECULATION_CTRL
    65, 66,  # PR_SET/GET_MDWE
    0x53564D41,  # PR_SET_VMA (glibc names anonymous mappings)
)  # fmt: skip

# Allowed with any arguments.
ALLOWED = (
    # files and descriptors
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range", "lseek",
    "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "pipe", "pipe2", "stat",
    "stat64", "fstat", "fstat64", "lstat", "lstat64", "newfstatat", "fstatat64", "statx",
    "statfs", "statfs64", "fstatfs", "fstatfs64", "access", "faccessat", "faccessat2",
    "readlink", "readlinkat", "getdents", "getdents64", "getcwd", "chdir", "fchdir", "rename",
    "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "link",
    "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown",
    "fchown", "lchown", "fchownat", "chown32", "fchown32", "lchown32", "umask", "utime",
    "utimes", "utimensat", "futimesat", "truncate", "ftruncate", "truncate64", "ftruncate64",
    "fallocate", "fadvise64", "fadvise64_64", "readahead", "fsync", "fdatasync", "sync",
    "syncfs", "sync_file_range", "mknod", "mknodat", "sendfile", "sendfile64", "splice",
    "tee", "vmsplice", "copy_file_range", "getxattr", "lgetxattr", "fgetxattr", "listxattr",
    "llistxattr", "flistxattr", "setxattr", "lsetxattr", "fsetxattr", "removexattr",
    "lremovexattr", "fremovexattr", "inotify_init", "inotify_init1", "inotify_add_watch",
    "inotify_rm_watch", "memfd_create", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select",
    "_newselect", "pselect6",
    # memory
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "msync", "mincore",
    "mlock", "mlock2", "munlock", "mlockall", "munlockall", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "membarrier", "remap_file_pages",
    # threads, processes, signals, time
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "futex", "futex_waitv",
    "futex_wake", "futex_wait", "futex_requeue", "sched_yield", "sched_getaffinity",
    "sched_getparam", "sched_getscheduler", "sched_getattr", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "getpriority", "getcpu",
    "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid",
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    "getuid32", "geteuid32", "getgid32", "getegid32", "getresuid32", "getresgid32",
    "getgroups32", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setgroups", "setfsuid", "setfsgid", "setuid32", "setgid32", "setreuid32", "setregid32",
    "setresuid32", "setresgid32", "setgroups32", "setfsuid32", "setfsgid32", "capget",
    "capset", "arch_prctl", "uname", "sysinfo", "getrlimit", "ugetrlimit", "setrlimit",
    "getrusage", "times", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigreturn",
    "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigqueueinfo",
    "rt_tgsigqueueinfo", "sigaltstack", "kill", "tkill", "tgkill", "pause", "alarm",
    "restart_syscall", "pidfd_open", "pidfd_send_signal", "nanosleep", "clock_nanosleep",
    "clock_gettime", "clock_getres", "clock_adjtime", "gettimeofday", "time", "setitimer",
    "getitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
    "timer_delete", "getrandom", "set_thread_area", "get_thread_area", "modify_ldt",
    # sockets (socket and socketpair themselves carry argument checks)
    "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername", "sendto",
    "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "setsockopt",
    "getsockopt",
)  # fmt: skip

# SysV IPC: private to each session in the namespace wall (its own IPC namespace), the host's
# own in the Landlock wall, where it is refused.
_SYSV_IPC = (
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
)  # fmt: skip

# Allowed in the namespace wall, refused in the Landlock wall: inotify, whose watches see the
# host's own directories there (names and activity in directories the code cannot list, a
# sibling session's workspace without root) and time the host's workspace walk; and bind,
# which there names a socket in the host's own abstract namespace or on disk (the end of a
# socketpair could squat a name a host service wants, and receive what its clients send).
_LANDLOCK_REFUSED = ("inotify_init", "inotify_init1", "bind")

# Refused with EPERM, named so the refusal reads as deliberate (anything else unlisted is
# ENOSYS). Family by family: other processes; kernel surface with a history of exploits;
# namespaces and mounts; the machine itself; per-uid kernel budgets nothing needs (message
# queues); the wall itself.
REFUSED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd",
    "kcmp", "process_mrelease",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "keyctl", "add_key", "request_key", "fanotify_init", "io_setup",
    "io_submit", "io_getevents", "io_pgetevents", "io_destroy", "io_cancel",
    "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree",
    "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "iopl", "ioperm",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "uselib", "vhangup",
    "nfsservctl", "settimeofday", "clock_settime", "adjtimex", "sethostname",
    "setdomainname", "ioprio_set",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    "msgget", "msgsnd", "msgrcv", "msgctl",
    "seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
)  # fmt: skip


class SeccompUnavailable(Exception):
    """The seccomp binding or the system libseccomp is missing (the message says which)."""


def seccomp_filter_fd(wall: str = "namespaces") -> int:
    """A fresh memfd holding the compiled filter, rewound to offset 0, for ``--seccomp FD``.

    bubblewrap reads the program from the fd's current offset; a fd left at its end reads as an
    empty program and bubblewrap reports a misleading "CONFIG_SECCOMP" error. The caller owns
    (and must close) the fd.

    Raises:
        SeccompUnavailable: the binding or libseccomp cannot be loaded.
    """
    program = compile_filter(wall)
    fd = os.memfd_create("securepy-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


@functools.cache
def compile_filter(wall: str = "namespaces", *, memfd: bool = True) -> bytes:
    """The filter for ``wall`` ("namespaces" or "landlock") as classic BPF bytes, compiled
    once per process and variant.

    ``memfd=False`` (read by the Landlock wall only) refuses ``memfd_create``: for a session
    without a memory cgroup, where the pages the code ``write()``s into a memfd and never maps
    count against no limit (``RLIMIT_AS`` counts mappings). A second cached program, so no
    session compiles its own.

    Raises:
        SeccompUnavailable: the binding or libseccomp cannot be loaded.
    """
    seccomp = _import_binding()
    allow = seccomp.ALLOW
    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ERRNO(errno.ENOSYS))
    rules.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    # A binary tree over the call numbers rather than one long chain: every system call the
    # code makes walks the program, and an allow list is long.
    rules.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    landlock = wall == "landlock"
    refused = REFUSED
    if landlock:
        refused += (*_SYSV_IPC, *_LANDLOCK_REFUSED, *(() if memfd else ("memfd_create",)))
    for name in ALLOWED:
        if name not in refused:
            _add_rule(seccomp, rules, allow, name)
    for name in refused:
        _add_rule(seccomp, rules, refuse, name)
    if not landlock:
        for name in _SYSV_IPC:
            _add_rule(seccomp, rules, allow, name)
    masked_eq, eq, ne = seccomp.MASKED_EQ, seccomp.EQ, seccomp.NE
    mask = _CLONE_NAMESPACE_MASK
    _add_rule(seccomp, rules, allow, "clone", seccomp.Arg(0, masked_eq, mask, 0))
    for flag in range(32):
        if mask >> flag & 1:
            bit = 1 << flag
            _add_rule(seccomp, rules, refuse, "clone", seccomp.Arg(0, masked_eq, bit, bit))
    # clone3 is left to the default, ENOSYS: glibc then falls back to clone.
    for mask, value in _all_but((_TIOCSTI, _TIOCLINUX)):
        _add_rule(seccomp, rules, allow, "ioctl", seccomp.Arg(1, masked_eq, mask, value))
    for request in (_TIOCSTI, _TIOCLINUX):
        _add_rule(seccomp, rules, refuse, "ioctl", seccomp.Arg(1, masked_eq, 0xFFFFFFFF, request))
    for value in _PERSONALITIES:
        _add_rule(seccomp, rules, allow, "personality", seccomp.Arg(0, eq, value))
    for option in _PRCTL_OPTIONS:
        _add_rule(seccomp, rules, allow, "prctl", seccomp.Arg(0, eq, option))
    for name, index in (
        ("prlimit64", 0),
        ("sched_setaffinity", 0),
        ("sched_setparam", 0),
        ("sched_setscheduler", 0),
        ("sched_setattr", 0),
    ):
        _add_rule(seccomp, rules, allow, name, seccomp.Arg(index, eq, 0))
        _add_rule(seccomp, rules, refuse, name, seccomp.Arg(index, ne, 0))
    # setpriority(which, who, prio): who == 0 is the caller itself only with PRIO_PROCESS; with
    # PRIO_PGRP or PRIO_USER it is the caller's group or uid, the host's processes included.
    _add_rule(
        seccomp, rules, allow, "setpriority",
        seccomp.Arg(0, eq, _PRIO_PROCESS), seccomp.Arg(1, eq, 0),
    )  # fmt: skip
    _add_rule(seccomp, rules, refuse, "setpriority", seccomp.Arg(0, ne, _PRIO_PROCESS))
    _add_rule(seccomp, rules, refuse, "setpriority", seccomp.Arg(1, ne, 0))
    if landlock:
        # SOCK_STREAM pairs only: a datagram end can be connect()ed or sendto() any socket on
        # disk (Landlock does not check unix connects by path), and dissolved to bind an
        # abstract name. The kernel reads the type as 32 bits, flags or-ed in.
        kind = 0xFFFFFFFF & ~_SOCK_FLAGS
        unix = seccomp.Arg(0, eq, _AF_UNIX)
        stream = seccomp.Arg(1, masked_eq, kind, _SOCK_STREAM)
        _add_rule(seccomp, rules, allow, "socketpair", unix, stream)
        for bit in range(32):
            if kind >> bit & 1:
                value = 0 if _SOCK_STREAM >> bit & 1 else 1 << bit
                other = seccomp.Arg(1, masked_eq, 1 << bit, value)
                _add_rule(seccomp, rules, refuse, "socketpair", other)
    else:
        _add_rule(seccomp, rules, allow, "socketpair", seccomp.Arg(0, eq, _AF_UNIX))
    _add_rule(seccomp, rules, refuse, "socketpair", seccomp.Arg(0, ne, _AF_UNIX))
    if landlock:
        _add_rule(seccomp, rules, refuse, "socket")
    else:
        _add_rule(seccomp, rules, allow, "socket", seccomp.Arg(0, eq, _AF_UNIX))
        _add_rule(seccomp, rules, refuse, "socket", seccomp.Arg(0, ne, _AF_UNIX))
    return _export_bpf(rules)


def _all_but(refused: tuple[int, ...]) -> list[tuple[int, int]]:
    """(mask, value) pairs whose union is every 32-bit value but ``refused``, with the upper 32
    bits zero. A filter can compare an argument with one masked value per rule and has no
    "masked not-equal"; a plain not-equal compares all 64 bits, so ``TIOCSTI | 1 << 32`` would
    pass it while the kernel reads the request as 32 bits, i.e. as ``TIOCSTI``."""
    high = 0xFFFFFFFF00000000
    found: list[tuple[int, int]] = []

    def split(bits: int, prefix: int) -> None:
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        if not any(r & mask == prefix for r in refused):
            found.append((high | mask, prefix))
        elif bits < 32:
            split(bits + 1, prefix)
            split(bits + 1, prefix | 1 << (31 - bits))

    split(0, 0)
    return found


def _import_binding() -> Any:
    try:
        import pyseccomp  # type: ignore[import-untyped]  # the binding ships no types
    except ImportError as exc:
        raise SeccompUnavailable(
            "the seccomp binding (pyseccomp, a dependency of securepy-core) is not "
            "installed: reinstall securepy-core, or pip install pyseccomp (it also needs the "
            "system libseccomp: apt install libseccomp2, dnf install libseccomp)"
        ) from exc
    except (OSError, RuntimeError) as exc:
        raise SeccompUnavailable(
            f"the system libseccomp cannot be loaded ({exc}): apt install libseccomp2, "
            "dnf install libseccomp"
        ) from exc
    return pyseccomp


def _add_rule(seccomp: Any, rules: Any, action: int, name: str, *args: Any) -> None:
    number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    if number < 0:  # libseccomp does not know the call on this architecture (or a pseudo one)
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
