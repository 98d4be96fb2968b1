"""``wall="auto"``: bubblewrap's namespaces where they can be made, else the Landlock wall.

The choice is made once per interpreter and process, at the first session (bubblewrap's
wall is proven by starting the interpreter in it, about 15 ms), and it is never silent: a host
that gets the Landlock wall logs a warning naming why bubblewrap cannot run, ``session.wall``
says "landlock", the audit log's ``session_start`` carries it, and ``securepy doctor`` prints
it. When neither wall can stand, the error names both reasons.
"""

from __future__ import annotations

import logging
import threading

from .._interpreter import Interpreter
from ..errors import SandboxUnavailableError
from .base import ChildProcess, Launcher, LaunchSpec

__all__ = ["AutoLauncher", "choose_wall"]

logger = logging.getLogger("securepy")

_lock = threading.Lock()
_choices: dict[Interpreter, Launcher | SandboxUnavailableError] = {}


class AutoLauncher:
    """Starts each session on the wall :func:`choose_wall` picks for its interpreter."""

    sandboxed = True
    wall = "auto"

    def launch(self, spec: LaunchSpec) -> ChildProcess:
        """Start ``spec`` on the chosen wall.

        Raises:
            securepy.errors.SandboxUnavailableError: neither wall can stand here.
        """
        return choose_wall(spec.interpreter).launch(spec)


def choose_wall(interpreter: Interpreter) -> Launcher:
    """The launcher of the first wall that stands here for ``interpreter`` (cached).

    Raises:
        securepy.errors.SandboxUnavailableError: neither can; the message gives both reasons.
    """
    with _lock:
        choice = _choices.get(interpreter)
        if choice is None:
            choice = _choices[interpreter] = _choose(interpreter)
    if isinstance(choice, SandboxUnavailableError):
        raise SandboxUnavailableError(str(choice))
    return choice


def _choose(interpreter: Interpreter) -> Launcher | SandboxUnavailableError:
    from .bubblewrap import BubblewrapLauncher, wall_config
    from .landlock import LandlockLauncher, landlock_problem_for

    try:
        wall_config(interpreter)
    except SandboxUnavailableError as exc:
        namespaces_problem = str(exc)
    else:
        return BubblewrapLauncher()
    problem = landlock_problem_for(interpreter)
    if problem is None:
        logger.warning(
            "securepy: bubblewrap cannot run here (%s); sessions run behind the "
            "Landlock wall instead (Landlock, seccomp, no-new-privs, a uid per "
            "session as root): see docs/threat-model.md for what it does not "
            "cover; pass wall='namespaces' to refuse it",
            namespaces_problem,
        )
        return LandlockLauncher()
    return SandboxUnavailableError(
        f"no sandbox can be built here. Namespaces (bubblewrap): {namespaces_problem}. "
        f"Landlock: {problem}."
    )
