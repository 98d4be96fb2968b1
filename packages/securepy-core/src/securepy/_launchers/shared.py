"""The shared template: sessions outside pools forked from one template per configuration.

A pool forks its sessions from a template of its own (:mod:`.template`). A plain ``Session()``
(and ``AsyncSession``, ``execute_python``, the adapters' sessions) would otherwise pay a whole
bubblewrap start, about three times a bare interpreter's start. Instead, where a template can
run (``template_problem`` in :mod:`.template` says so), such sessions fork from a template this
module starts on first use and keeps for the life of the process:

- one template per configuration a template fixes when it starts: the interpreter, the
  mounts (staged in the template's sandbox) and the environment; limits are per session.
  At most :data:`MAX_TEMPLATES` of them; a session whose configuration would need another
  starts with bubblewrap, as it would without templates;
- restarted on the next session if it dies (the sessions forked from it die with it, and
  restart on their next execute like any session whose child was stopped);
- stopped by an ``atexit`` hook, or earlier by :func:`close_shared_templates`
  (``Session.close_shared_templates()``);
- seen through :func:`shared_templates` (``Session.shared_templates()``): the host pid of each
  template, the host file descriptors it holds and how many sessions forked from it still
  run, so leak checks can account for exactly these and nothing else.

Opt out per session with ``Session(template=False)``, or for the process with the environment
variable ``SECUREPY_SHARED_TEMPLATE=0``. ``wall="landlock"``, ``sandbox=False`` and an explicit
``launcher=`` never use it. What sessions of one template share (the str hash secret, the
address-space layout) is in ``_worker/template.py``'s docstring and docs/threat-model.md.

:meth:`TemplateLauncher.running` names each template's pid and the fds it holds here.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import threading
import weakref
from collections.abc import Mapping

from .._interpreter import Interpreter
from .._mounts import Mount
from ..errors import SandboxUnavailableError
from . import template
from .base import ChildProcess, LaunchSpec

__all__ = [
    "ENV_SWITCH",
    "MAX_TEMPLATES",
    "SharedTemplateStatus",
    "close_shared_templates",
    "shared_launcher",
    "shared_templates",
    "switched_on",
]

logger = logging.getLogger("securepy")

ENV_SWITCH = "SECUREPY_SHARED_TEMPLATE"
# Each template is a sandboxed interpreter kept for the process's life (about 10-20 MiB):
# a few configurations earn one; sessions of any further one start with bubblewrap.
MAX_TEMPLATES = 4

_ON = ("", "1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SharedTemplateStatus:
    """One shared template, as :func:`shared_templates` sees it.

    Attributes:
        python: the interpreter its sessions run.
        mounts: the mounts its sessions get.
        pid: host pid of the template's bubblewrap (a child of this process); None while no
            template runs (not started yet, stopped, or died: the next session restarts it).
        fds: this process's file descriptors that belong to the template (its control socket
            and the pipe of its stderr).
        sessions: sessions forked from it that still run.
    """

    python: str
    mounts: tuple[Mount, ...]
    pid: int | None
    fds: tuple[int, ...]
    sessions: int


def shared_templates() -> tuple[SharedTemplateStatus, ...]:
    """Every shared template this process has, running or not (see the module docstring)."""
    with _lock:
        entries = list(_entries.values())
    return tuple(entry.status() for entry in entries)


def close_shared_templates() -> None:
    """Stop every shared template now, and with it every session forked from one (such a
    session restarts on its next execute, its state lost). A later session starts a new
    template. Idempotent; also runs at interpreter exit."""
    global _entries
    with _lock:
        entries, _entries = list(_entries.values()), {}
    for entry in entries:
        entry.close()


def shared_launcher(interpreter: Interpreter, mounts: tuple[Mount, ...],
                    env: Mapping[str, str], *, wall: str) -> _SharedTemplate | None:
    """The shared template for a sandboxed session of this configuration, or None when the
    session should start as it would without one (switched off, the Landlock wall, no template
    can run here, too many templates already, or this configuration's template failed to
    start).

    Raises:
        ValueError: ``SECUREPY_SHARED_TEMPLATE`` holds something other than on or off.
    """
    if wall == "landlock" or not switched_on():
        return None
    try:
        problem = template.template_problem(interpreter)
    except SandboxUnavailableError:
        return None  # no bubblewrap here: the wall "auto" picks starts the session
    if problem is not None:
        return None
    key = (interpreter, mounts, tuple(sorted(env.items())))
    with _lock:
        entry = _entries.get(key)
        if entry is None:
            if len(_entries) >= MAX_TEMPLATES:
                logger.debug("securepy: %d shared templates already run; this session "
                             "starts with bubblewrap", MAX_TEMPLATES)
                return None
            entry = _entries[key] = _SharedTemplate(interpreter, mounts)
    return None if entry.failed else entry


def switched_on() -> bool:
    """Whether plain sessions may fork from shared templates (``SECUREPY_SHARED_TEMPLATE``).

    Raises:
        ValueError: the variable holds something other than on or off.
    """
    value = os.environ.get(ENV_SWITCH, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{ENV_SWITCH}={os.environ[ENV_SWITCH]!r} is neither on nor off: set it "
                     f"to 0 to start every session with bubblewrap, or 1 (or unset it) to fork "
                     f"sessions from the shared template")


class _SharedTemplate:
    """One shared template: a :class:`TemplateLauncher` and what the host holds for it."""

    sandboxed = True

    def __init__(self, interpreter: Interpreter, mounts: tuple[Mount, ...]) -> None:
        self._interpreter = interpreter
        self._mounts = mounts
        self._launcher = template.TemplateLauncher()
        self._lock = threading.Lock()
        self._children: weakref.WeakSet[ChildProcess] = weakref.WeakSet()
        self._closed = False
        self.failed: str | None = None

    @property
    def pids_cgroup(self) -> bool:
        """As the template launcher's (each session gets a pids cgroup where the host has
        them; a fallback to bubblewrap does too)."""
        return self._launcher.pids_cgroup

    def launch(self, spec: LaunchSpec) -> ChildProcess:
        """Fork a session from the template (starting it first if it is not running); where
        it cannot start, start the session with bubblewrap.

        Raises:
            securepy.errors.SandboxUnavailableError: the session cannot start.
        """
        with self._lock:
            child = None if self._closed else self._launch_from_template(spec)
            if child is not None:
                self._children.add(child)
                return child
        from .bubblewrap import BubblewrapLauncher

        # template_problem() found bubblewrap's wall standing, so "auto" would pick it too.
        return BubblewrapLauncher().launch(spec)

    def _launch_from_template(self, spec: LaunchSpec) -> ChildProcess | None:
        retried = False
        while True:
            starting = not self._launcher.running()
            try:
                return self._launcher.launch(spec)
            except (SandboxUnavailableError, OSError) as exc:
                running = bool(self._launcher.running())
                if starting and not running:  # no template came up
                    if not retried:  # (a retry may have met the dead one once more)
                        self.failed = str(exc)
                        logger.info("securepy: the shared session template did not start "
                                    "(%s); sessions of this configuration start with "
                                    "bubblewrap", exc)
                    return None
                if running or retried:
                    raise  # the template runs: this session's own failure
                retried = True  # it died under this launch: the next round starts a new one

    def status(self) -> SharedTemplateStatus:
        with self._lock:
            running = self._launcher.running()
            pid, fds = (running[0].pid, running[0].fds) if running else (None, ())
            sessions = sum(1 for child in list(self._children) if child.poll() is None)
        return SharedTemplateStatus(python=self._interpreter.executable, mounts=self._mounts,
                                    pid=pid, fds=fds, sessions=sessions)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._launcher.close()


_lock = threading.Lock()
_entries: dict[tuple[Interpreter, tuple[Mount, ...], tuple[tuple[str, str], ...]],
               _SharedTemplate] = {}


def _forget_after_fork() -> None:
    """A forked child of the host does not own the parent's templates: it must neither stop
    them at its exit nor fork sessions from them."""
    global _lock, _entries
    _lock = threading.Lock()
    _entries = {}


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(close_shared_templates)
