"""Probes of what the Linux sandbox needs, for ``securepy doctor``.

Each probe returns a :class:`Check`: whether it passed, what was found, and the fix. The probes
that matter for ``sandbox=True`` are marked ``required``; the others say which enforcement is
active (a missing cgroup means rlimits only, not no sandbox).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from ._interpreter import Interpreter, probe_interpreter
from ._launchers import bubblewrap, bwrap_binary
from ._launchers.cgroups import detect_cgroup_support
from ._launchers.seccomp import SeccompUnavailable, compile_filter
from .errors import SandboxUnavailableError, SecurePyError

__all__ = ["Check", "can_sandbox", "chosen_wall", "report", "run_checks"]


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One probe's outcome.

    Attributes:
        name: what was probed ("bubblewrap", "user namespaces", ...).
        ok: True when it passed.
        detail: what was found, as a sentence.
        fix: what to install or change when it failed ("" when ok).
        required: False for probes that only weaken a layer when they fail (cgroups, and
            seccomp for a non-root host); ``can_sandbox`` ignores those.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def run_checks(python: str | None = None) -> list[Check]:
    """Probe this host for everything the sandbox needs, in dependency order.

    Two walls can stand on Linux (docs/deployment.md): bubblewrap's namespaces, and Landlock
    for hosts where namespaces cannot be made (default containers). A check of one wall is
    not required on its own; the final "wall" check is: it says which wall ``wall="auto"``
    picks, and fails only when neither can stand.

    Args:
        python: the interpreter to check (default: this one).

    Returns:
        One ``Check`` per probe; later probes that depend on a failed one report that they
        were not run.
    """
    platform_check = _check_platform()
    if not platform_check.ok:
        # No wall to check for; the rlimits still tell what sandbox=False enforces here.
        return [platform_check, dataclasses.replace(_check_rlimits(), required=False)]
    checks = [platform_check, _check_seccomp(), _check_cgroups(), _check_rlimits()]
    namespaces = [_optional(_check_bubblewrap())]
    if namespaces[0].ok:
        namespaces += [_optional(_check_userns()), _optional(_check_proc_mount())]
        ready = all(c.ok for c in namespaces) and checks[1].ok
        namespaces.append(_optional(_check_interpreter(python, ready=ready)))
    else:
        for name in ("user namespaces", "/proc mount", "interpreter"):
            namespaces.append(
                Check(
                    name,
                    False,
                    "not checked: bubblewrap cannot run here",
                    "fix the bubblewrap check above first",
                    required=False,
                )
            )
    checks += namespaces
    landlock = _check_landlock(python)
    checks.append(landlock)
    checks.append(_check_wall(namespaces, landlock))
    if namespaces[-1].ok:
        checks.append(_check_template(python))
    return checks


def can_sandbox(checks: list[Check]) -> bool:
    """True when every required check passed: ``sandbox=True`` can start here."""
    return all(check.ok for check in checks if check.required)


_NAMESPACE_CHECKS = ("bubblewrap", "user namespaces", "/proc mount", "interpreter")


def chosen_wall(checks: list[Check]) -> str | None:
    """The wall ``wall="auto"`` picks on this host ("namespaces" or "landlock"), or None when
    neither can stand; the same decision as the final "wall" check."""
    passed = {check.name for check in checks if check.ok}
    if all(name in passed for name in _NAMESPACE_CHECKS):
        return "namespaces"
    if "landlock wall" in passed:
        return "landlock"
    return None


def report(checks: list[Check]) -> dict[str, Any]:
    """The checks as one JSON-ready object, for ``securepy doctor --json``.

    Keys: ``can_sandbox`` (bool), ``wall`` ("namespaces", "landlock" or None), ``version``
    (securepy's), ``host`` (platform, kernel release, Python, whether running as root) and
    ``checks``: one object per check with ``name``, ``ok``, ``required``, ``status`` ("ok",
    "fail" for a failed required check, "note" for a failed optional one, as the text output
    marks them), ``detail`` and ``fix``.
    """
    from . import __version__

    geteuid = getattr(os, "geteuid", None)
    return {
        "can_sandbox": can_sandbox(checks),
        "wall": chosen_wall(checks),
        "version": __version__,
        "host": {
            "platform": sys.platform,
            "kernel": platform.release(),
            "python": platform.python_version(),
            "root": geteuid is not None and geteuid() == 0,
        },
        "checks": [
            {
                "name": check.name,
                "ok": check.ok,
                "required": check.required,
                "status": "ok" if check.ok else "fail" if check.required else "note",
                "detail": check.detail,
                "fix": check.fix,
            }
            for check in checks
        ],
    }


def _optional(check: Check) -> Check:
    return dataclasses.replace(check, required=False)


def _check_landlock(python: str | None) -> Check:
    from ._launchers.landlock import landlock_abi, landlock_problem_for

    try:
        problem = landlock_problem_for(probe_interpreter(python))
    except SandboxUnavailableError as exc:
        problem = str(exc)
    abi = landlock_abi()
    if problem is None:
        return Check(
            "landlock wall",
            True,
            f"Landlock ABI {abi}: the Landlock wall can stand here",
            required=False,
        )
    return Check("landlock wall", False, problem, "see docs/deployment.md", required=False)


def _check_wall(namespaces: list[Check], landlock: Check) -> Check:
    if all(c.ok for c in namespaces):
        return Check(
            "wall",
            True,
            "sessions run behind the namespaces wall (bubblewrap); wall='auto' picks it",
        )
    if landlock.ok:
        why = next(c for c in namespaces if not c.ok)
        return Check(
            "wall",
            True,
            "sessions run behind the landlock wall: wall='auto' picks "
            f"it because bubblewrap cannot run here ({why.name}: {why.detail}); see "
            "docs/threat-model.md for what it does not cover",
        )
    return Check(
        "wall",
        False,
        "no wall can stand here: neither bubblewrap's namespaces nor Landlock",
        "apply one of the fixes above (docs/deployment.md)",
    )


def _check_platform() -> Check:
    if sys.platform.startswith("linux"):
        return Check("platform", True, f"Linux {os.uname().release}")
    return Check(
        "platform",
        False,
        f"{sys.platform} has no bubblewrap sandbox",
        "run securepy on Linux (a VM or container works), or pass sandbox=False (unsafe)",
    )


def _check_bubblewrap() -> Check:
    try:
        path = bubblewrap.find_bwrap()
    except SandboxUnavailableError as exc:
        return Check("bubblewrap", False, str(exc).split(";")[0], _fix_of(exc))
    version = ".".join(map(str, bwrap_binary.bwrap_version(path)))
    return Check("bubblewrap", True, f"{path}, version {version}")


def _check_seccomp() -> Check:
    root = os.geteuid() == 0
    try:
        program = compile_filter()
    except SeccompUnavailable as exc:
        detail = f"seccomp allow list unavailable: {exc}"
        fix = "reinstall securepy-core (it depends on pyseccomp); apt install libseccomp2"
        return Check("seccomp", False, detail, fix, required=root)
    return Check(
        "seccomp", True, f"allow list compiled ({len(program)} bytes of BPF)", required=root
    )


def _check_cgroups() -> Check:
    support = detect_cgroup_support()
    if support.version:
        return Check("cgroups", True, support.detail, required=False)
    return Check(
        "cgroups",
        False,
        support.detail,
        "for a per-sandbox memory and pids limit, run as root with cgroup v1 controllers, or "
        "under a delegated cgroup v2 subtree (systemd-run --user --scope -p Delegate=yes ...)",
        required=False,
    )


def _check_rlimits() -> Check:
    try:
        import resource
    except ImportError:  # Windows
        resource = None  # type: ignore[assignment]
    names = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC")
    missing = [n for n in names if not hasattr(resource, n)]
    if missing:
        return Check("rlimits", False, f"missing: {', '.join(missing)}", "use Linux")
    detail = "AS, CPU, FSIZE, NOFILE, NPROC available"
    if os.geteuid() == 0:
        detail += (
            "; host is root, so each session runs as a uid of its own (where "
            "RLIMIT_NPROC and the kernel's other per-uid budgets apply per session)"
        )
    return Check("rlimits", True, detail)


def _check_userns() -> Check:
    if os.geteuid() == 0:
        return Check(
            "user namespaces",
            True,
            "not needed: running as root, bubblewrap builds the sandbox without a user "
            "namespace and the code runs as a uid of its own (setpriv)",
        )
    return _run_bwrap_probe(
        "user namespaces",
        ["--unshare-user", "--ro-bind", "/", "/", "--", "/bin/true"],
        "unprivileged user namespaces work",
    )


def _check_proc_mount() -> Check:
    userns = [] if os.geteuid() == 0 else ["--unshare-user"]
    return _run_bwrap_probe(
        "/proc mount",
        [*userns, "--unshare-pid", "--ro-bind", "/", "/", "--proc", "/proc", "--", "/bin/true"],
        "a fresh /proc can be mounted in a new pid namespace",
    )


def _run_bwrap_probe(name: str, options: list[str], success: str) -> Check:
    try:
        proc = subprocess.run(
            [bubblewrap.find_bwrap(), *options],
            capture_output=True,
            text=True,
            env={},
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, SandboxUnavailableError) as exc:
        return Check(name, False, f"bubblewrap did not run: {exc}", "run `securepy doctor` again")
    if proc.returncode == 0:
        return Check(name, True, success)
    reason = bubblewrap.diagnose_bwrap_failure(proc.stderr)
    return Check(name, False, reason.split(":", 1)[0], reason)


def _check_interpreter(python: str | None, *, ready: bool) -> Check:
    where = python or sys.executable
    if not ready:
        return Check("interpreter", False, f"not checked ({where})", "fix the checks above first")
    return _probe_wall(where, lambda: probe_interpreter(python))


def _probe_wall(where: str, probe: Callable[[], Interpreter]) -> Check:
    try:
        interpreter = probe()
        config = bubblewrap.wall_config(interpreter)
    except SandboxUnavailableError as exc:
        return Check("interpreter", False, f"{where} cannot run sandboxed", str(exc))
    return Check(
        "interpreter",
        True,
        f"{where} starts inside the sandbox ({config.mode} mode, code runs as "
        f"{_uid_text(config.uid, config.mode)}, seccomp {'on' if config.seccomp else 'off'})",
    )


def _uid_text(uid: int, mode: str) -> str:
    if mode != "root-drop":
        return f"uid {uid}"
    from ._launchers.identity import uid_range

    first, last = uid_range()
    return f"a uid of its own from {first}-{last}"


def _check_template(python: str | None) -> Check:
    """Whether pools can fork sessions from a template here: proven by forking one."""
    from ._launchers.template import template_problem

    mode = "root-drop"
    try:
        interpreter = probe_interpreter(python)
        mode = bubblewrap.wall_config(interpreter).mode
        problem = template_problem(interpreter) or _fork_one_session(python)
    except SandboxUnavailableError as exc:
        problem = str(exc)
    if problem is None:
        how = ("each as a uid of its own" if mode == "root-drop" else
               "as this user, each in a user namespace of its own")
        return Check(
            "session template",
            True,
            f"pools fork each session from a sandboxed template (a few ms a session, {how}; "
            f"{mode} mode); {_shared_template_note()}",
            required=False,
        )
    return Check(
        "session template",
        False,
        problem,
        "none needed: pools start each session with bubblewrap (about 30 ms)",
        required=False,
    )


def _shared_template_note() -> str:
    """What plain sessions do here: fork from the shared template, or (switched off) not."""
    from ._launchers.shared import ENV_SWITCH, switched_on

    try:
        on = switched_on()
    except ValueError as exc:
        return str(exc)
    if on:
        return (f"plain Session()s fork from a shared template started on first use "
                f"({ENV_SWITCH}=0 turns that off)")
    return f"plain Session()s start their own bubblewrap ({ENV_SWITCH} is off)"


def _fork_one_session(python: str | None) -> str | None:
    """Start a template and fork one session from it; why that failed, or None."""
    from ._launchers.template import TemplateChild, TemplateLauncher
    from ._session import Session

    launcher = TemplateLauncher()
    try:
        with Session(launcher=launcher, python=python, timeout=30) as session:
            if session.execute("6 * 7").value != 42:
                return "a session forked from the template gave a wrong answer"
            if not isinstance(session._child.process, TemplateChild):  # type: ignore[union-attr]
                return "the session was not forked from the template"
    except SecurePyError as exc:
        return f"the session template cannot run here: {exc}"
    finally:
        launcher.close()
    return None


def _fix_of(exc: Exception) -> str:
    text = str(exc)
    return text.split(";", 1)[1].strip() if ";" in text else text
