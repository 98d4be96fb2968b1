"""Other platforms: ``import securepy`` works without the POSIX-only modules, and the sandbox
says plainly where it can run. Simulated in a subprocess: the modules macOS or Windows lack are
made unimportable and ``sys.platform`` is set before securepy is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_HERE = Path(__file__).parent

# Run by a host interpreter made to look like the platform (see simulated_platform.py); its
# sessions' workers run under the same pretence, through a wrapper given as python=.
_SCENARIO = textwrap.dedent("""
    import json, os, sys, threading
    sys.path.insert(0, sys.argv[3])
    import simulated_platform
    simulated_platform.pretend(sys.argv[1])
    import securepy

    report = {"imported": sorted(m for m in simulated_platform.BLOCKED[sys.argv[1]]
                                 if m in sys.modules)}
    try:
        securepy.Session()
    except securepy.SandboxUnavailableError as exc:
        report["sandbox"] = str(exc)
    try:
        with securepy.SessionPool(1, acquire_timeout=20) as pool:
            pool.execute("1")
    except securepy.SandboxUnavailableError as exc:
        report["pool"] = str(exc)

    @securepy.tool
    def double(x: int) -> int:
        "Twice x."
        return 2 * x

    with securepy.Session(tools=[double], sandbox=False, python=sys.argv[2]) as session:
        session.execute("y = double(21)")
        report["unsandboxed"] = session.execute("y").value
        report["inside"] = session.execute("import sys; sys.platform").value
        printed = session.execute(
            "import subprocess\\n"
            "print('from the code')\\n"
            "subprocess.run([sys.executable, '-c', 'print(6 * 7)'], check=True)")
        report["stdout"] = printed.stdout
        threading.Timer(0.5, session.interrupt).start()
        try:
            session.execute("import time\\nwhile True: time.sleep(0.01)")
        except securepy.ExecutionError as exc:
            report["interrupt"] = str(exc)
        try:
            session.execute("while True: pass", timeout=1)
        except securepy.ExecutionTimeout as exc:
            report["timeout"] = str(exc)
        report["kept"] = session.execute("y").value
        session.files.write("in/data.txt", b"abc")
        session.execute("open('in/out.txt', 'w').write(open('in/data.txt').read() * 2)")
        report["files"] = [session.files.read("in/out.txt").decode(),
                           [entry.name for entry in session.files.list("in")]]
        session.files.remove("in/out.txt")
        report["removed"] = [entry.name for entry in session.files.list("in")]
        session.files.remove("in")
        report["removed"].append("in" in [entry.name for entry in session.files.list()])
    report["left_in_tmp"] = sorted(os.listdir(os.environ["TMPDIR"]))
    import contextlib, io
    from securepy._cli import main
    with contextlib.redirect_stdout(io.StringIO()) as doctor:
        report["doctor_status"] = main(["doctor", "--json"])
    checks = json.loads(doctor.getvalue())["checks"]
    report["doctor_failed"] = [c["name"] for c in checks if c["status"] == "fail"]
    print(json.dumps(report))
""")

_NO_WALL = (
    "securepy's sandbox runs on Linux only (bubblewrap namespaces, or Landlock and seccomp); "
    "{name} has no wall securepy can build, so sandbox=True cannot start here. "
)

# What sandbox=False does on both platforms, the same as on Linux.
_UNSANDBOXED = {
    "unsandboxed": 42,
    "stdout": "from the code\n42\n",
    "interrupt": "KeyboardInterrupt: the code was stopped by interrupt(); the session kept "
    "its state",
    "timeout": "execution timed out after 1 s: the code was interrupted; the session kept "
    "its state",
    "kept": 42,
    "files": ["abcabc", ["data.txt", "out.txt"]],
    "removed": ["data.txt", False],
    "left_in_tmp": [],
    "doctor_status": 1,
    "doctor_failed": ["platform"],
}


def _simulate(platform: str, tmp_path: Path) -> dict[str, object]:
    wrapper = tmp_path / "python"
    wrapper.write_text(
        f"#!/bin/sh\nexec {sys.executable} -I {_HERE / 'simulated_platform.py'} {platform} "
        f'"$0" "$@"\n')
    wrapper.chmod(0o755)
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _SCENARIO, platform, str(wrapper), str(_HERE)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_macos_imports_refuses_the_sandbox_and_runs_unsandboxed(tmp_path: Path) -> None:
    report = _simulate("darwin", tmp_path)
    message = _NO_WALL.format(name="macOS") + (
        "To run untrusted code, run securepy inside a Linux container or VM (Docker, Podman, a "
        "Linux host); for code you trust, pass sandbox=False (a plain child process with the "
        "limits this platform can enforce, no isolation)."
    )
    assert report == {
        "imported": [],
        "sandbox": message,
        "pool": f"no session of the pool could start: {message}",
        "inside": "darwin",
        **_UNSANDBOXED,
    }


@pytest.mark.slow
def test_windows_imports_refuses_the_sandbox_and_runs_unsandboxed(tmp_path: Path) -> None:
    report = _simulate("win32", tmp_path)
    message = _NO_WALL.format(name="Windows") + (
        "Run securepy under WSL2 or in a Linux container, where sandbox=True works."
    )
    assert report == {
        "imported": [],
        "sandbox": message,
        "pool": f"no session of the pool could start: {message}",
        "inside": "win32",
        **_UNSANDBOXED,
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
