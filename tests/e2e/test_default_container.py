"""securepy as installed in a default container: Docker's default seccomp profile and
capabilities (no ``CAP_SYS_ADMIN``: no namespaces, no mounts), reproduced on this machine by
tests/security/default_container.py, with a fresh venv of core's wheel as the application's
environment. There ``wall="auto"`` picks the Landlock wall by itself and says so: the quickstart
runs sandboxed, ``securepy doctor`` names the wall, and the main attack classes fail while the
same code succeeds unsandboxed (the control).

The whole attack suite runs against the Landlock wall in tests/security (``landlock`` walls);
this module proves the wall is the one a real default container gets, with what it really has.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ROOT

REPRODUCTION = ROOT / "tests" / "security" / "default_container.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="a container's root is root: the reproduction "
                       "needs it"),
]

ATTACKS = r"""
import json, os, socket, sys, tempfile, securepy

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4)
port = listener.getsockname()[1]
secret = tempfile.NamedTemporaryFile("w", delete=False)
secret.write("container secret")
secret.close()
os.chmod(secret.name, 0o644)  # readable by anyone the filesystem asks: only the wall stops it
outside = tempfile.mkdtemp()  # a host directory outside the workspace
os.chmod(outside, 0o777)  # writable by anyone the filesystem asks: only the wall stops it

PROBES = {
    "connect": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2).close()\n'ok'",
    "read": f"open({secret.name!r}).read()",
    "signal": f"import os\nos.kill({os.getpid()}, 0)\n'ok'",
    "unshare": "import os\nos.unshare(os.CLONE_NEWUSER)\n'ok'",
    "write": f"open({outside!r} + '/probe', 'w').write('x')",
}


def outcome(session, code):
    try:
        return ["ok", session.execute(code).value]
    except securepy.ExecutionError as exc:
        return ["refused", exc.type_name]


out = {}
with securepy.Session(timeout=30) as sandboxed, securepy.Session(sandbox=False) as control:
    out["wall"] = sandboxed.wall
    for name, code in PROBES.items():
        out[name] = {"sandboxed": outcome(sandboxed, code), "control": outcome(control, code)}
out["written"] = os.listdir(outside)
os.unlink(secret.name)
for name in out["written"]:
    os.unlink(os.path.join(outside, name))
os.rmdir(outside)
print(json.dumps(out))
"""


def _in_container(python: Path, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), str(REPRODUCTION), str(script), *args],
        capture_output=True, text=True, timeout=180, cwd=script.parent, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": "/root"},
    )


@pytest.fixture(scope="module")
def container_python(fresh_venv: Callable[[str, list[str]], Path]) -> Path:
    return fresh_venv("container", ["securepy-core"])


def test_the_quickstart_runs_behind_the_landlock_wall(container_python: Path) -> None:
    run = _in_container(container_python, ROOT / "examples" / "quickstart.py")
    assert run.returncode == 0, run.stderr[-3000:]
    assert any(line.startswith("value: Fiat 128") for line in run.stdout.splitlines()), run.stdout
    assert "Landlock wall" in run.stderr  # chosen by "auto", and never silently


def test_doctor_names_the_landlock_wall(container_python: Path, workdir: Path) -> None:
    script = workdir / "doctor.py"
    script.write_text("import sys\nfrom securepy._cli import main\nsys.exit(main(['doctor']))\n")
    run = _in_container(container_python, script)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    wall = [line for line in run.stdout.splitlines() if line.split()[1:2] == ["wall:"]]
    assert len(wall) == 1 and wall[0].startswith("ok") and "landlock" in wall[0].lower(), (
        run.stdout
    )
    assert not any(line.startswith("FAIL") for line in run.stdout.splitlines()), run.stdout


def test_attacks_fail_behind_the_landlock_wall_and_work_unsandboxed(
    container_python: Path, workdir: Path
) -> None:
    script = workdir / "attacks.py"
    script.write_text(ATTACKS)
    run = _in_container(container_python, script)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out.pop("wall") == "landlock"
    assert out.pop("written") == ["probe"]  # by the control only
    for probe, result in out.items():
        assert result["sandboxed"][0] == "refused", (probe, result)
    # The controls: the targets were there to reach. (An unsandboxed child in a default
    # container cannot make namespaces either: the container refuses that one itself.)
    for probe in ("connect", "read", "signal", "write"):
        assert out[probe]["control"][0] == "ok", (probe, out[probe])
    assert out["read"]["control"][1] == "container secret"
