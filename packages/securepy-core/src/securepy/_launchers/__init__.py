"""Launchers: how a session's child process is started (sandboxed or not)."""

from __future__ import annotations

import socket
import sys

from ..errors import SandboxUnavailableError
from .base import ChildProcess, Launcher, LaunchSpec

__all__ = [
    "WALLS",
    "ChildProcess",
    "LaunchSpec",
    "Launcher",
    "has_a_wall",
    "select_launcher",
    "wall_of",
]

_PLATFORM_NAMES = {"darwin": "macOS", "win32": "Windows", "cygwin": "Windows (Cygwin)"}


def has_a_wall() -> bool:
    """True on Linux, the only platform where securepy can build its sandbox (namespaces
    through bubblewrap, or Landlock and seccomp)."""
    return sys.platform.startswith("linux")


WALLS = ("auto", "namespaces", "landlock")


def wall_of(process: object) -> str:
    """The wall a started child has: "namespaces", "landlock" or "none" (launchers tests plug
    in may not say: then by whether it is sandboxed)."""
    wall = getattr(process, "wall", None)
    if isinstance(wall, str):
        return wall
    return "namespaces" if getattr(process, "sandboxed", False) else "none"


def select_launcher(*, sandbox: bool, wall: str = "auto") -> Launcher:
    """The launcher for ``sandbox`` and ``wall``: bubblewrap's namespaces, the Landlock wall,
    the first of them that can stand here ("auto"), or a plain child process.

    Raises:
        securepy.errors.SandboxUnavailableError: ``sandbox=True`` and the sandbox cannot be
            used on this host (never falls back to running unsandboxed).
    """
    if not sandbox:
        if sys.platform == "win32" or not hasattr(socket, "AF_UNIX"):
            from .portable import PortableLauncher

            return PortableLauncher()
        from .unsandboxed import UnsandboxedLauncher

        return UnsandboxedLauncher()
    if not has_a_wall():
        raise SandboxUnavailableError(_no_wall_message(sys.platform))
    if wall == "landlock":
        from .landlock import LandlockLauncher

        return LandlockLauncher()
    if wall == "namespaces":
        from .bubblewrap import BubblewrapLauncher

        return BubblewrapLauncher()
    from .auto import AutoLauncher

    return AutoLauncher()


def _no_wall_message(platform: str) -> str:
    name = _PLATFORM_NAMES.get(platform, platform)
    if platform == "win32":
        instead = "Run securepy under WSL2 or in a Linux container, where sandbox=True works."
    else:
        instead = (
            "To run untrusted code, run securepy inside a Linux container or VM "
            "(Docker, Podman, a Linux host); for code you trust, pass sandbox=False (a "
            "plain child process with the limits this platform can enforce, no "
            "isolation)."
        )
    return (
        f"securepy's sandbox runs on Linux only (bubblewrap namespaces, or Landlock and "
        f"seccomp); {name} has no wall securepy can build, so sandbox=True cannot start "
        f"here. {instead}"
    )
