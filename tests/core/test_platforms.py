"""Other platforms: ``import securepy`` works without the POSIX-only modules, and the sandbox
says plainly where it can run. Simulated in a subprocess: the modules macOS or Windows lack are
made unimportable and ``sys.platform`` is set before securepy is imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# What Windows' stdlib lacks that securepy's host side could reach at import.
_WINDOWS_MISSING = {
    "os": "fork killpg getuid geteuid getgid setsid getpgid sysconf sysconf_names WNOHANG "
    "sched_yield memfd_create MFD_CLOEXEC pidfd_open fdatasync O_CLOEXEC O_NOFOLLOW "
    "O_DIRECTORY O_NOCTTY O_NONBLOCK uname statvfs wait4 WIFEXITED WEXITSTATUS",
    "signal": "SIGKILL SIGXCPU SIGXFSZ SIGCHLD SIGHUP SIGUSR1 SIGUSR2 SIGSTOP SIGCONT SIGPIPE "
    "pthread_kill pthread_sigmask setitimer",
    "socket": "AF_UNIX MSG_DONTWAIT SOCK_SEQPACKET SCM_RIGHTS",
}

_SIMULATION = textwrap.dedent("""
    import importlib.abc, json, sys
    # The stdlib modules load first, as on the real platform (their own imports differ there).
    import asyncio, concurrent.futures, hashlib, logging, os, select, signal, socket
    import subprocess, sysconfig, tempfile, zoneinfo
    sysconfig.get_config_vars()  # read for the real platform, before sys.platform changes

    platform, blocked, missing = sys.argv[1], set(json.loads(sys.argv[2])), json.loads(sys.argv[3])

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name in blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    for name in blocked:
        sys.modules.pop(name, None)
    for module_name, names in missing.items():
        for name in names.split():
            if hasattr(sys.modules[module_name], name):
                delattr(sys.modules[module_name], name)
    sys.platform = platform

    import securepy
    report = {"imported": sorted(m for m in blocked if m in sys.modules)}
    try:
        securepy.Session()
    except securepy.SandboxUnavailableError as exc:
        report["sandbox"] = str(exc)
    try:
        with securepy.SessionPool(1, acquire_timeout=20) as pool:
            pool.execute("1")
    except securepy.SandboxUnavailableError as exc:
        report["pool"] = str(exc)
    try:
        @securepy.tool
        def double(x: int) -> int:
            "Twice x."
            return 2 * x
        with securepy.Session(tools=[double], sandbox=False) as session:
            session.execute("y = double(21)")
            report["unsandboxed"] = session.execute("y").value
    except securepy.SandboxUnavailableError as exc:
        report["unsandboxed"] = str(exc)
    print(json.dumps(report))
""")

_NO_WALL = (
    "securepy's sandbox runs on Linux only (bubblewrap namespaces, or Landlock and seccomp); "
    "{name} has no wall securepy can build, so sandbox=True cannot start here. "
)


def _simulate(platform: str, blocked: set[str], missing: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _SIMULATION,
            platform,
            json.dumps(sorted(blocked)),
            json.dumps(missing),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_macos_imports_refuses_the_sandbox_and_runs_unsandboxed() -> None:
    report = _simulate("darwin", set(), {})
    message = _NO_WALL.format(name="macOS") + (
        "To run untrusted code, run securepy inside a Linux container or VM (Docker, Podman, a "
        "Linux host); for code you trust, pass sandbox=False (a plain child process with the "
        "limits this platform can enforce, no isolation)."
    )
    assert report == {
        "imported": [],
        "sandbox": message,
        "pool": f"no session of the pool could start: {message}",
        "unsandboxed": 42,
    }


@pytest.mark.slow
def test_windows_imports_and_says_where_to_run_instead() -> None:
    report = _simulate("win32", {"fcntl", "resource", "pwd", "grp", "termios"}, _WINDOWS_MISSING)
    message = _NO_WALL.format(name="Windows") + (
        "Run securepy under WSL2 or in a Linux container, where sandbox=True works."
    )
    assert report == {
        "imported": [],
        "sandbox": message,
        "pool": f"no session of the pool could start: {message}",
        "unsandboxed": (
            "securepy cannot start its child process on Windows yet, even with sandbox=False "
            "(the child inherits its socket by file descriptor and is stopped by process "
            "group, which Windows does not offer); run securepy under WSL2 or in a Linux "
            "container, where sandbox=True works too."
        ),
    }


def test_linux_control_the_sandbox_is_offered() -> None:
    from securepy._launchers import has_a_wall

    assert has_a_wall() is sys.platform.startswith("linux")


def _refuse_setrlimit(which: int, limits: tuple[int, int]) -> None:
    raise ValueError("current limit exceeds maximum limit")


def test_limits_macos_refuses_are_skipped_there_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from securepy._worker import rlimits

    monkeypatch.setattr(rlimits.resource, "setrlimit", _refuse_setrlimit)
    monkeypatch.setattr(sys, "platform", "darwin")
    rlimits.apply_limits({"memory_bytes": 1 << 30}, nproc=False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(ValueError, match=r"^current limit exceeds maximum limit$"):
        rlimits.apply_limits({"memory_bytes": 1 << 30}, nproc=False)
