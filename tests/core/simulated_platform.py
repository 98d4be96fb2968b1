"""Makes this interpreter look like macOS's or Windows' to securepy, host and worker alike.

What the other platform's stdlib lacks is made unimportable or deleted, and ``sys.platform`` is
set, before securepy (or the worker) is imported. The stdlib modules that read ``sys.platform``
at import load first, for the real platform: their own imports differ on the other one, which
is not what is simulated here.

``pretend(platform)`` does it in the calling process. Run as a script, this module is an
interpreter for the worker: ``simulated_platform.py <platform> <wrapper> [python args]`` treats
the rest as a ``python [-I] [-S] -c CODE ARGS`` command line and runs it under the pretence
(``sys.executable`` is the wrapper, so a probe of the interpreter names the wrapper again).
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

# Modules Windows' stdlib does not have, and names it lacks in modules it has.
BLOCKED = {
    "win32": frozenset({"fcntl", "resource", "pwd", "grp", "termios"}),
    "darwin": frozenset(),
}
MISSING = {
    "win32": {
        "os": "fork killpg getuid geteuid getgid setsid getpgid sysconf sysconf_names WNOHANG "
        "sched_yield memfd_create MFD_CLOEXEC pidfd_open fdatasync O_CLOEXEC O_NOFOLLOW "
        "O_DIRECTORY O_NOCTTY O_NONBLOCK O_PATH O_TMPFILE uname statvfs wait4 WIFEXITED "
        "WEXITSTATUS pwrite pread set_blocking sched_getaffinity",
        "signal": "SIGKILL SIGXCPU SIGXFSZ SIGCHLD SIGHUP SIGUSR1 SIGUSR2 SIGSTOP SIGCONT SIGPIPE "
        "pthread_kill pthread_sigmask setitimer",
        "socket": "AF_UNIX MSG_DONTWAIT SOCK_SEQPACKET SCM_RIGHTS SOCK_CLOEXEC SOCK_NONBLOCK",
        "_socket": "AF_UNIX MSG_DONTWAIT SOCK_SEQPACKET SCM_RIGHTS SOCK_CLOEXEC SOCK_NONBLOCK",
        "select": "poll POLLIN POLLOUT POLLERR POLLHUP epoll",
    },
    "darwin": {
        "os": "O_PATH O_TMPFILE memfd_create MFD_CLOEXEC pidfd_open sched_getaffinity "
        "sched_setaffinity posix_fadvise eventfd splice copy_file_range getresuid",
        "socket": "SOCK_CLOEXEC SOCK_NONBLOCK",
        "_socket": "SOCK_CLOEXEC SOCK_NONBLOCK",
        "select": "epoll",
    },
}
# Windows has no dir_fd anywhere (os.supports_dir_fd is empty there).
EMPTIED = {"win32": {"os": ("supports_dir_fd", "supports_follow_symlinks")}, "darwin": {}}


class _Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, blocked: frozenset[str]) -> None:
        self._blocked = blocked

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> None:
        if name in self._blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def pretend(platform: str) -> None:
    """Make this process look like ``platform`` ("win32" or "darwin") from now on."""
    import asyncio  # noqa: F401
    import concurrent.futures  # noqa: F401
    import hashlib  # noqa: F401
    import logging  # noqa: F401
    import os  # noqa: F401
    import select  # noqa: F401
    import shutil  # noqa: F401
    import signal  # noqa: F401
    import socket  # noqa: F401
    import subprocess
    import sysconfig
    import tempfile  # noqa: F401
    import zoneinfo  # noqa: F401

    sysconfig.get_config_vars()  # read for the real platform, before sys.platform changes
    # subprocess works as on the real platform (on Windows it would use _winapi instead): it
    # keeps its own copies of what is deleted below.
    for name in ("os", "signal"):
        twin = ModuleType(name)
        twin.__dict__.update(vars(sys.modules[name]))
        setattr(subprocess, name, twin)
    blocked = BLOCKED[platform]
    sys.meta_path.insert(0, _Blocker(blocked))
    for name in blocked:
        sys.modules.pop(name, None)
    for module_name, names in MISSING[platform].items():
        module = sys.modules[module_name]
        for name in names.split():
            if hasattr(module, name):
                delattr(module, name)
    for module_name, names in EMPTIED[platform].items():
        for name in names:
            setattr(sys.modules[module_name], name, set())
    sys.platform = platform


def _run_as_python(platform: str, wrapper: str, args: list[str]) -> None:
    while args and args[0] in ("-I", "-S", "-E", "-s"):
        args = args[1:]
    if not args or args[0] != "-c":
        raise SystemExit(f"simulated_platform: only -c is supported, not {args!r}")
    pretend(platform)
    sys.executable = wrapper
    sys.argv = ["-c", *args[2:]]
    sys.path.pop(0)  # this script's directory: `python -c` has "" there instead
    sys.path.insert(0, "")
    exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    _run_as_python(sys.argv[1], sys.argv[2], sys.argv[3:])
