"""Launchers: how a session's child process is started (sandboxed or not)."""

from __future__ import annotations

from .base import ChildProcess, Launcher, LaunchSpec

__all__ = ["ChildProcess", "LaunchSpec", "Launcher", "select_launcher"]


def select_launcher(*, sandbox: bool) -> Launcher:
    """The launcher for ``sandbox``: bubblewrap on Linux, or a plain child process.

    Raises:
        securepy.errors.SandboxUnavailableError: ``sandbox=True`` and the sandbox cannot be
            used on this host (never falls back to running unsandboxed).
    """
    if not sandbox:
        from .unsandboxed import UnsandboxedLauncher

        return UnsandboxedLauncher()
    from .bubblewrap import BubblewrapLauncher

    return BubblewrapLauncher()
