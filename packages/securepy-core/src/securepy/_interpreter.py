"""What a child interpreter is: its paths, found once by asking it."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys

from .errors import SandboxUnavailableError

__all__ = ["Interpreter", "probe_interpreter"]

_PROBE = (
    "import json, sys, sysconfig; print(json.dumps({'executable': sys.executable, "
    "'prefix': sys.prefix, 'base_prefix': sys.base_prefix, 'path': sys.path[1:], "
    "'version': list(sys.version_info[:3]), 'stdlib': sysconfig.get_paths()['stdlib']}))"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Interpreter:
    """A Python interpreter a session can run.

    Attributes:
        executable: the path to run (as given, not resolved: a venv's bin/python link must stay
            a venv link so that the venv's site-packages apply).
        prefix: sys.prefix (the venv, if one).
        base_prefix: sys.base_prefix (the installation).
        path: sys.path without the script directory entry; the worker restores it under ``-S``.
        version: (major, minor, micro).
    """

    executable: str
    prefix: str
    base_prefix: str
    path: tuple[str, ...]
    version: tuple[int, int, int]

    @property
    def roots(self) -> tuple[str, ...]:
        """Directories the interpreter reads from: prefixes and sys.path entries, deduplicated,
        with entries inside another one dropped."""
        candidates = sorted(
            {os.path.realpath(p) for p in (self.prefix, self.base_prefix, *self.path) if p}
            | {self.prefix, self.base_prefix}
        )
        kept: list[str] = []
        for path in candidates:
            if not os.path.exists(path):
                continue
            if any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
                continue
            kept.append(path)
        return tuple(kept)


def probe_interpreter(python: str | None) -> Interpreter:
    """Ask ``python`` (default: this interpreter) for its paths, once per path.

    Raises:
        securepy.errors.SandboxUnavailableError: the interpreter is missing, not executable,
            or older than 3.11.
    """
    return _probe(python or sys.executable)


@functools.lru_cache(maxsize=16)
def _probe(python: str) -> Interpreter:
    if not os.path.isabs(python):
        raise ValueError(f"python must be an absolute path, got {python!r}")
    try:
        proc = subprocess.run(
            [python, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
    except OSError as exc:
        raise SandboxUnavailableError(
            f"cannot run the interpreter {python!r}: {exc.strerror}; pass python= the path "
            "of an installed Python 3.11 or newer"
        ) from exc
    if proc.returncode != 0:
        raise SandboxUnavailableError(
            f"the interpreter {python!r} failed to start (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}"
        )
    info = json.loads(proc.stdout)
    version = tuple(info["version"])
    if version < (3, 11):
        raise SandboxUnavailableError(
            f"the interpreter {python!r} is Python {'.'.join(map(str, version))}; "
            "securepy's worker needs Python 3.11 or newer"
        )
    return Interpreter(
        executable=python,
        prefix=info["prefix"],
        base_prefix=info["base_prefix"],
        path=tuple(p for p in info["path"] if p),
        version=(version[0], version[1], version[2]),
    )
