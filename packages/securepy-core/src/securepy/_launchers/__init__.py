"""Launchers: how a session's child process is started (sandboxed or not)."""

from __future__ import annotations

import sys

from ..errors import SandboxUnavailableError
from .base import ChildProcess, Launcher, LaunchSpec

__all__ = ["ChildProcess", "LaunchSpec", "Launcher", "has_a_wall", "select_launcher"]

_PLATFORM_NAMES = {"darwin": "macOS", "win32": "Windows", "cygwin": "Windows (Cygwin)"}


def has_a_wall() -> bool:
    """True on Linux, the only platform where securepy can build its sandbox (namespaces
    through bubblewrap, or Landlock and seccomp)."""
    return sys.platform.startswith("linux")


def select_launcher(*, sandbox: bool) -> Launcher:
    """The launcher for ``sandbox``: bubblewrap on Linux, or a plain child process.

    Raises:
        securepy.errors.SandboxUnavailableError: ``sandbox=True`` and the sandbox cannot be
            used on this host (never falls back to running unsandboxed).
    """
    if not sandbox:
        if sys.platform == "win32":
            raise SandboxUnavailableError(_NO_CHILD_ON_WINDOWS)
        from .unsandboxed import UnsandboxedLauncher

        return UnsandboxedLauncher()
    if not has_a_wall():
        raise SandboxUnavailableError(_no_wall_message(sys.platform))
    from .bubblewrap import BubblewrapLauncher

    return BubblewrapLauncher()


# The child inherits its socket by fd number and is stopped by process group: both POSIX.
_NO_CHILD_ON_WINDOWS = (
    "securepy cannot start its child process on Windows yet, even with sandbox=False (the "
    "child inherits its socket by file descriptor and is stopped by process group, which "
    "Windows does not offer); run securepy under WSL2 or in a Linux container, where "
    "sandbox=True works too."
)


def _no_wall_message(platform: str) -> str:
    name = _PLATFORM_NAMES.get(platform, platform)
    if platform == "win32":
        instead = ("Run securepy under WSL2 or in a Linux container, where sandbox=True works.")
    else:
        instead = ("To run untrusted code, run securepy inside a Linux container or VM "
                   "(Docker, Podman, a Linux host); for code you trust, pass sandbox=False (a "
                   "plain child process with the limits this platform can enforce, no "
                   "isolation).")
    return (f"securepy's sandbox runs on Linux only (bubblewrap namespaces, or Landlock and "
            f"seccomp); {name} has no wall securepy can build, so sandbox=True cannot start "
            f"here. {instead}")
