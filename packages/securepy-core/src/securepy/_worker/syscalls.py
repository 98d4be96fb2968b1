"""The few Linux calls the worker makes through the C library (the sandbox's set-up: mounts,
namespaces, prctl, seccomp, Landlock), each raising ``OSError`` with the call named. Stdlib
only: this runs inside the sandbox."""

from __future__ import annotations

import ctypes
import os

__all__ = ["SockFprog", "check", "libc", "mount", "prctl"]

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
# prctl reads its arguments as unsigned longs, and some options insist the unused ones are
# zero: full-width arguments, not ctypes' default 32-bit ints.
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]  # fmt: skip


class SockFprog(ctypes.Structure):
    """``struct sock_fprog``: a seccomp BPF program, as ``prctl(PR_SET_SECCOMP)`` takes it."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def check(result: int, what: str) -> None:
    """Raise ``OSError`` (errno and ``what``) unless the call returned 0."""
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """``prctl(2)``, its result unchecked (see :func:`check`)."""
    return int(libc.prctl(option, arg2, arg3, arg4, arg5))


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """``mount(2)``, checked."""
    result = libc.mount(
        None if source is None else source.encode(),
        target.encode(),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        None if data is None else data.encode(),
    )
    check(result, f"mount {target}")
