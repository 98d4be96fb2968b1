"""``securepy.Mount``: a host directory exposed inside sessions.

A mount is checked once, when it is made: the host path must exist and must not be, or hold, a
place a session should never see (``/``, ``/etc``, ``/proc``, ``/sys``, ``/dev``, ``/boot``,
``/root``, ``/run``, the home directory or its hidden entries), nor, when writable, the
interpreter or securepy itself; the path inside must not cover the system or the workspace
itself. The host path is resolved (symbolic links followed) here, on the host, by the caller's
choice; nothing the code does later can move it.

Each wall applies ``LaunchSpec.mounts`` its own way (bubblewrap: ``--ro-bind``/``--bind`` after
the workspace tmpfs; see :func:`target_inside` for where a relative ``path_inside`` lands).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Iterable
from typing import Any

__all__ = ["Mount", "check_mounts", "target_inside"]

# Host paths never exposed (nor anything that holds one of them: "/" holds them all).
_SENSITIVE = ("/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/run", "/var/run")
# Paths inside that a mount must not cover or shadow: the system the interpreter runs on.
_SYSTEM_INSIDE = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/tmp",
    "/run",
    "/var",
)


@typing.final
@dataclasses.dataclass(frozen=True, slots=True, init=False)
class Mount:
    """A host directory (or file) exposed to sessions: ``Session(mounts=[Mount(...)])``.

    Args:
        host_path: the directory on the host. Resolved now; it must exist.
        path_inside: where the code sees it: relative to the workspace (``"data"``) or
            absolute (``"/data"``); not the system's directories nor the workspace itself.
        writable: ``False`` (the default) exposes it read-only: the code cannot change,
            add or remove anything in it. ``True`` is an explicit choice for a scratch
            directory; the sandbox user (uid 65534 when the host runs as root) must be
            allowed to write there.

    Raises:
        ValueError: a sensitive host path, a missing one, or a bad ``path_inside``; the
            message names which and why.
    """

    host_path: str
    path_inside: str
    writable: bool

    def __init__(
        self, host_path: str | os.PathLike[str], path_inside: str, writable: bool = False
    ) -> None:
        if not isinstance(writable, bool):
            raise TypeError("writable must be True or False")
        object.__setattr__(self, "host_path", _check_host_path(host_path, writable))
        object.__setattr__(self, "path_inside", _check_inside(path_inside))
        object.__setattr__(self, "writable", writable)


def check_mounts(mounts: Any) -> tuple[Mount, ...]:
    """The ``mounts=`` session option as a tuple of Mounts, with no two at one place."""
    if isinstance(mounts, Mount):
        mounts = (mounts,)
    if not isinstance(mounts, Iterable) or isinstance(mounts, str | bytes):
        raise TypeError("mounts must be a list of securepy.Mount")
    checked = tuple(mounts)
    for mount in checked:
        if not isinstance(mount, Mount):
            raise TypeError(
                f"mounts must hold securepy.Mount objects, not "
                f"{type(mount).__name__}: securepy.Mount(host_path, path_inside)"
            )
    places = [m.path_inside for m in checked]
    for index, place in enumerate(places):
        if place in places[:index]:
            raise ValueError(f"two mounts at {place!r}; give each its own path_inside")
    return checked


def target_inside(mount: Mount, workspace: str) -> str:
    """The absolute path inside the sandbox a mount lands on (relative: under ``workspace``)."""
    if mount.path_inside.startswith("/"):
        return mount.path_inside
    return f"{workspace.rstrip('/')}/{mount.path_inside}"


def _check_host_path(host_path: Any, writable: bool) -> str:
    if not isinstance(host_path, str | os.PathLike):
        raise TypeError(f"host_path must be a str or a path, not {type(host_path).__name__}")
    given = os.fspath(host_path)
    if not isinstance(given, str) or not given:
        raise ValueError("host_path must be a non-empty text path")
    path = os.path.realpath(os.path.expanduser(given))
    if not os.path.exists(path):
        raise ValueError(f"Mount host_path {given!r} does not exist")
    reason = _sensitive(path, writable)
    if reason is not None:
        raise ValueError(
            f"Mount host_path {given!r} ({path}) is refused: {reason}; expose a "
            "directory made for the purpose, e.g. a dataset directory"
        )
    return path


def _sensitive(path: str, writable: bool) -> str | None:
    if path == "/":
        return "it is the root of the file system"
    for place in _SENSITIVE:
        if _within(path, place):
            return f"it is under {place}"
        if _within(place, path):
            return f"it holds {place}"
    home = os.path.realpath(os.path.expanduser("~"))
    if home != "/" and _within(home, path):
        return "it is (or holds) the home directory"
    if home != "/" and _within(path, home):
        first = os.path.relpath(path, home).split(os.sep)[0]
        if first.startswith("."):
            return f"it is in the home directory's hidden {first} (credentials and settings)"
    if writable:
        for held in _interpreter_roots():
            if _within(held, path) or _within(path, held):
                return (
                    f"it holds the interpreter or securepy ({held}) and writable=True "
                    "would let the code change what later sessions run"
                )
    return None


def _interpreter_roots() -> list[str]:
    package = os.path.dirname(os.path.abspath(__file__))
    roots = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        package,
        os.path.dirname(os.path.realpath(sys.executable)),
    }
    return sorted(os.path.realpath(root) for root in roots)


def _check_inside(path_inside: Any) -> str:
    if not isinstance(path_inside, str) or not path_inside.strip():
        raise TypeError("path_inside must be a non-empty str, e.g. 'data' or '/data'")
    if "\0" in path_inside:
        raise ValueError("path_inside contains a NUL character")
    absolute = path_inside.startswith("/")
    parts = [p for p in path_inside.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"path_inside {path_inside!r} contains '..'")
    if not parts:
        raise ValueError(
            f"path_inside {path_inside!r} names the root or the workspace itself; "
            "give a directory below it, e.g. 'data'"
        )
    normal = ("/" if absolute else "") + "/".join(parts)
    if absolute:
        for place in _SYSTEM_INSIDE:
            if _within(normal, place) or _within(place, normal):
                raise ValueError(
                    f"path_inside {path_inside!r} would cover {place}, which the "
                    "sandbox's system needs; use e.g. '/data' or a path relative "
                    "to the workspace"
                )
        for held in _interpreter_roots():
            if _within(normal, held) or _within(held, normal):
                raise ValueError(
                    f"path_inside {path_inside!r} would cover the interpreter "
                    f"({held}); choose another place, e.g. '/data'"
                )
        if normal in ("/workspace", "/securepy-workspace"):
            raise ValueError(
                f"path_inside {path_inside!r} is the workspace itself; use a "
                "directory in it, e.g. 'data'"
            )
    return normal


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")
