"""Finding bubblewrap, checking its version, and turning its failures into a cause and a fix."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from ..errors import SandboxUnavailableError

__all__ = ["MIN_BWRAP_VERSION", "bwrap_version", "diagnose_bwrap_failure", "find_bwrap"]

MIN_BWRAP_VERSION = (0, 8, 0)


def find_bwrap() -> str:
    """The bubblewrap binary, checked to be new enough.

    Raises:
        securepy.errors.SandboxUnavailableError: missing or older than 0.8.0.
    """
    path = _which_bwrap()
    if path is None:
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) is not installed; install it from your distribution "
            "(apt install bubblewrap, dnf install bubblewrap, pacman -S bubblewrap), or pass "
            "sandbox=False to run without a sandbox (explicitly unsafe)"
        )
    version = bwrap_version(path)
    if version < MIN_BWRAP_VERSION:
        raise SandboxUnavailableError(
            f"bubblewrap at {path} is version {'.'.join(map(str, version))}; securepy needs "
            "0.8.0 or newer (--disable-userns, tmpfs sizes): upgrade the bubblewrap package "
            "(Debian 12, Ubuntu 23.04, Fedora 38 and later ship it)"
        )
    return path


@functools.cache
def bwrap_version(path: str) -> tuple[int, ...]:
    """bubblewrap's version as a tuple, (0,) when it cannot be read."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, env={}, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0,)
    numbers = out.split()[-1].split(".") if out.split() else []
    try:
        return tuple(int(n) for n in numbers)
    except ValueError:
        return (0,)


def diagnose_bwrap_failure(stderr: str) -> str:
    """Turn bubblewrap's complaint into a cause and a fix, as one sentence."""
    text = stderr.strip()
    if "uid map" in text or "No permissions to create" in text or "new namespace" in text:
        return _userns_blocked_reason(text)
    if "mount proc" in text or "proc on" in text:
        return (
            f"the sandbox cannot mount a fresh /proc ({text}); inside Docker the default "
            "seccomp and AppArmor profiles refuse it: run the container with "
            "--security-opt seccomp=unconfined --security-opt apparmor=unconfined "
            "--security-opt systempaths=unconfined, or run securepy on the host"
        )
    if "Can't find source path" in text or "source path" in text:
        return (
            f"bubblewrap cannot bind a path the interpreter needs ({text}); make the "
            "interpreter's directories readable, or pass python= an interpreter installed "
            "where bubblewrap can read it"
        )
    if "seccomp" in text.lower():
        return f"bubblewrap could not install the seccomp filter ({text}); run `securepy doctor`"
    return f"bubblewrap failed to start the sandbox ({text or 'no message'}); run `securepy doctor`"


def _userns_blocked_reason(text: str) -> str:
    apparmor = _read_sysctl("kernel/apparmor_restrict_unprivileged_userns")
    if apparmor == "1":
        return (
            f"user namespaces are restricted by AppArmor ({text}): allow them with "
            "`sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0` (persist it in "
            "/etc/sysctl.d), or install an AppArmor profile granting bwrap `userns`"
        )
    if _read_sysctl("kernel/unprivileged_userns_clone") == "0":
        return (
            f"unprivileged user namespaces are disabled ({text}): "
            "`sudo sysctl kernel.unprivileged_userns_clone=1`"
        )
    if _read_sysctl("user/max_user_namespaces") == "0":
        return (
            f"user namespaces are disabled ({text}): `sudo sysctl user.max_user_namespaces=15000`"
        )
    return (
        f"the sandbox cannot create its namespaces ({text}); inside a container, run it with "
        "--security-opt seccomp=unconfined (Docker's default profile refuses namespaces), or "
        "run securepy on the host"
    )


def _read_sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/{name}", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _which_bwrap() -> str | None:
    for candidate in ("/usr/bin/bwrap", "/usr/local/bin/bwrap"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("bwrap")
