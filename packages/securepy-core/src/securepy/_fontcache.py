"""matplotlib's font cache, built once on the host and shown read-only to every session.

matplotlib scans the system's fonts the first time it is imported in a fresh configuration
directory (0.4 s or more, and ``fc-list`` prints Fontconfig errors into the session's stderr,
which the model reads). Every sandboxed session starts with an empty workspace, so each would
pay that. Instead the host builds the cache once per interpreter and matplotlib version (kept
under ``$XDG_CACHE_HOME/securepy``, ``~/.cache/securepy`` by default), the walls bind it
read-only at :data:`SANDBOX_FONT_CACHE`, and the worker copies it into the session's own
matplotlib directory (``_worker/display.py``) at start.

Nothing here runs when the interpreter has no matplotlib.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile

from ._interpreter import Interpreter

__all__ = ["SANDBOX_FONT_CACHE", "font_cache"]

logger = logging.getLogger("securepy")

# Where the walls bind the cache inside the sandbox.
SANDBOX_FONT_CACHE = "/securepy/fonts"
_BUILD_TIMEOUT = 120.0


@functools.cache
def font_cache(interpreter: Interpreter) -> str | None:
    """The host directory holding matplotlib's font cache for ``interpreter`` (built now if
    missing), or None when the interpreter has no matplotlib or the cache cannot be built."""
    package = _matplotlib_dir(interpreter)
    if package is None:
        return None
    try:
        stamp = os.stat(os.path.join(package, "__init__.py"))
    except OSError:
        return None
    key = hashlib.sha256(
        f"{interpreter.executable}\0{package}\0{stamp.st_mtime_ns}\0{stamp.st_size}".encode()
    ).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    target = os.path.join(base, "securepy", f"matplotlib-{key}")
    if _has_cache(target):
        return target
    try:
        return _build(interpreter, target)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.info(
            "matplotlib's font cache could not be prepared (%s); each session builds its own", exc
        )
        return None


def _matplotlib_dir(interpreter: Interpreter) -> str | None:
    for entry in interpreter.path:
        candidate = os.path.join(entry, "matplotlib")
        if os.path.isfile(os.path.join(candidate, "__init__.py")):
            return candidate
    return None


def _has_cache(directory: str) -> bool:
    try:
        return any(n.startswith("fontlist-") and n.endswith(".json") for n in os.listdir(directory))
    except OSError:
        return False


def _build(interpreter: Interpreter, target: str) -> str | None:
    """Import matplotlib's font manager once with a fresh config dir, then move that dir into
    place (a rename: a concurrent builder's result is as good as ours)."""
    parent = os.path.dirname(target)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".matplotlib-", dir=parent)
    try:
        os.chmod(staging, 0o755)  # the sandbox's user (uid 65534 as root) reads it
        subprocess.run(
            [interpreter.executable, "-I", "-c", "import matplotlib.font_manager"],
            env={
                "MPLCONFIGDIR": staging,
                "MPLBACKEND": "Agg",
                "HOME": staging,
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LANG": "C.UTF-8",
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_BUILD_TIMEOUT,
            check=True,
        )
        for name in os.listdir(staging):
            if not (name.startswith("fontlist-") and name.endswith(".json")):
                shutil.rmtree(os.path.join(staging, name), ignore_errors=True)
            else:
                os.chmod(os.path.join(staging, name), 0o644)
        if not _has_cache(staging):
            return None
        try:
            os.rename(staging, target)
        except OSError:
            if not _has_cache(target):
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
