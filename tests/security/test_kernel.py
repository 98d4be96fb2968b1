"""Kernel attack surface: io_uring, bpf, perf_event_open, userfaultfd, new namespaces
(unshare, setns, clone flags, clone3), mount and the new mount API, chroot, keyrings, kernel
modules, reboot, swapon, open_by_handle_at, TIOCSTI.

Each probe runs in a forked child (so a call that works changes nothing of the worker) with
arguments that are harmless where they work. Control: unsandboxed (root in CI) the call reaches
the kernel: it succeeds, or fails with an error other than EPERM. Sandboxed: EPERM from the
seccomp filter (ENOSYS for clone3, whose flags a filter cannot read).
"""

from __future__ import annotations

import errno
import os
import platform
from typing import Any

import pytest
import securepy

pytestmark = pytest.mark.sandbox

ROOT = os.geteuid() == 0
NUMBERS = {  # syscall numbers: x86-64, aarch64
    "io_uring_setup": (425, 425),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "keyctl": (250, 219),
    "finit_module": (313, 273),
    "reboot": (169, 142),
    "open_by_handle_at": (304, 265),
    "chroot": (161, 51),
    "fsopen": (430, 430),
    "swapon": (167, 224),
    "clone": (56, 220),
    "clone3": (435, 435),
    "ioctl": (16, 29),
    "ptrace": (101, 117),
    "umount2": (166, 39),
}
ARCH = 0 if platform.machine() == "x86_64" else 1

# Each probe: the syscall and its arguments, as Python source evaluated in the child.
PROBES = {
    "io_uring_setup": "sc('io_uring_setup', 1, buf(120))",
    "bpf-map-create": "sc('bpf', 0, buf(72, struct.pack('IIII', 2, 4, 4, 1)), 72)",
    "perf_event_open": "sc('perf_event_open', buf(128, PERF_ATTR), 0, -1, -1, 0)",
    "userfaultfd": "sc('userfaultfd', os.O_CLOEXEC)",
    "unshare-user-namespace": "sc('unshare', 0x10000000)",
    "unshare-mount-namespace": "sc('unshare', 0x00020000)",
    "unshare-net-namespace": "sc('unshare', 0x40000000)",
    "setns-own-uts": "sc('setns', os.open('/proc/self/ns/uts', os.O_RDONLY), 0)",
    "clone-new-user": "clone_newuser()",
    "clone3": "sc('clone3', 0, 0)",
    "mount-tmpfs": "sc('mount', b'none', b'/nonexistent-securepy', b'tmpfs', 0, 0)",
    "umount-root": "sc('umount2', b'/nonexistent-securepy', 0)",
    "fsopen-new-mount-api": "sc('fsopen', b'tmpfs', 0)",
    "chroot": "sc('chroot', b'/nonexistent-securepy')",
    "keyctl-session-keyring": "sc('keyctl', 0, -3, 0)",
    "finit_module": "sc('finit_module', -1, b'', 0)",
    "reboot-bad-magic": "sc('reboot', 0, 0, 0, 0)",
    "swapon": "sc('swapon', b'/nonexistent-securepy', 0)",
    "open_by_handle_at": "sc('open_by_handle_at', -1, buf(16), 0)",
    "ioctl-tiocsti": "sc('ioctl', 0, 0x5412, buf(1, b'x'))",
    "ptrace-traceme": "sc('ptrace', 0, 0, 0, 0)",
}

CODE = """
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NUMBERS = {numbers!r}
PERF_ATTR = struct.pack("IIQ", 1, 128, 0)  # software event, cpu-clock
def buf(size, data=b""):
    return ctypes.create_string_buffer(data, size)
def arg(a):
    return ctypes.c_long(a) if isinstance(a, int) else a
def sc(name, *args):
    ret = libc.syscall(ctypes.c_long(NUMBERS[name]), *map(arg, args))
    return ret if ret < 0 else 0, ctypes.get_errno() if ret < 0 else 0
def clone_newuser():
    pid = libc.syscall(ctypes.c_long(NUMBERS["clone"]), ctypes.c_long(0x10000000 | 17),
                       None, None, None, None)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        return 0, 0
    return pid, ctypes.get_errno()
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        ret, err = {probe}
        os.write(write_end, str(err).encode())
    finally:
        os._exit(0)
os.close(write_end)
os.waitpid(pid, 0)
result = int(os.read(read_end, 100) or b"-1")
os.close(read_end)
result
"""


def _code(probe: str) -> str:
    numbers = {name: pair[ARCH] for name, pair in NUMBERS.items()}
    return CODE.format(numbers=numbers, probe=PROBES[probe])


@pytest.mark.parametrize("probe", list(PROBES), ids=list(PROBES))
def test_kernel_surface_is_refused(
    probe: str, shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    if ROOT:
        reached = host.value(control, _code(probe))
        assert reached != errno.EPERM, f"control: {errno.errorcode.get(reached, reached)}"
    refused = host.value(shared, _code(probe))
    expected = errno.ENOSYS if probe == "clone3" else errno.EPERM
    assert refused == expected, errno.errorcode.get(refused, refused)


# Calls added to the kernel after the allow list was written: never reach the kernel from
# the sandbox (ENOSYS, as on an older kernel, so libraries fall back). Same numbers on x86-64
# and aarch64 (the unified table since 5.1). Arguments are invalid where they reach it.
NEWER_CALLS = {
    "memfd_secret": (447, "0"),
    "cachestat": (451, "-1, 0, 0, 0"),
    "statmount": (457, "0, 0, 0, 0"),
    "listmount": (458, "0, 0, 0, 0"),
    "lsm_list_modules": (461, "0, 0, 1"),
    "mseal": (462, "0, 0, 1"),
}
NEWER_CODE = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ret = libc.syscall(ctypes.c_long({number}), *[ctypes.c_long(a) for a in ({args},)])
0 if ret >= 0 else ctypes.get_errno()
"""


@pytest.mark.parametrize("call", list(NEWER_CALLS))
def test_calls_newer_than_the_allow_list_do_not_reach_the_kernel(
    call: str, shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    number, args = NEWER_CALLS[call]
    code = NEWER_CODE.format(number=number, args=args)
    reached = host.value(control, code)
    if reached == errno.ENOSYS:
        pytest.skip(f"this kernel has no {call} (control got ENOSYS)")
    refused = host.value(shared, code)
    assert refused == errno.ENOSYS, errno.errorcode.get(refused, refused)


def test_refused_calls_with_high_bits_set_stay_refused(shared: securepy.Session, host: Any) -> None:
    """The kernel reads an ioctl request and a socket family as 32 bits; a filter compares 64.
    TIOCSTI with bit 32 set, and AF_INET with bit 32 set, are still refused."""
    code = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(n, *a):
    r = libc.syscall(ctypes.c_long(n), *[ctypes.c_long(x) for x in a])
    return 0 if r >= 0 else ctypes.get_errno()
tiocsti = sc({ioctl}, 0, 0x5412 | 1 << 32, 0)
inet = sc({socket}, 2 | 1 << 32, 1, 0)
fionread = sc({ioctl}, 0, 0x541B, ctypes.addressof(ctypes.c_int()))  # reaches the kernel
(tiocsti, inet, fionread)
""".format(ioctl=NUMBERS["ioctl"][ARCH], socket=(41, 198)[ARCH])
    # FIONREAD reaches the kernel, which says fd 0 (/dev/null) is no tty.
    assert host.value(shared, code) == (errno.EPERM, errno.EPERM, errno.ENOTTY)
