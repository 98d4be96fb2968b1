"""A user's first install: a fresh virtual environment holding only an adapter's wheel and
core's (no extra named) runs that adapter's README example sandboxed, as root and as an
unprivileged host user.

The environment is built on the system's interpreter, which every user can run (this
checkout's may live under /root), with the versions of uv.lock as constraints (the files come
from uv's cache, the registry is asked only for its indexes): it tests what the wheels declare,
not what the registry holds today.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import skip_unless_ci
from .conftest import ROOT

SYSTEM_PYTHON = "/usr/bin/python3"
ADAPTERS = ["securepy-langchain", "securepy-openai", "securepy-anthropic", "securepy-llamaindex"]
FIRST_BLOCK = re.compile(r"```python\n(?P<code>.*?)```", re.S)
# Appended to each example: which wall its sessions got (the example itself cannot say).
WALL_CHECK = (
    "\nimport securepy\nwith securepy.Session() as _session:\n    print('wall:', _session.wall)\n"
)
UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _system_python_problem() -> str | None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON}"
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info >= (3, 11))"],
        capture_output=True, text=True, check=False,
    )
    return None if done.stdout.strip() == "True" else f"{SYSTEM_PYTHON} is older than 3.11"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A directory every user may read (pytest's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="securepy-fresh-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def constraints(workdir: Path) -> Path:
    """The locked versions of every dependency, as pip constraints."""
    out = workdir / "constraints.txt"
    subprocess.run(
        ["uv", "export", "--frozen", "--all-packages", "--no-dev", "--no-hashes",
         "--no-emit-workspace", "--no-header", "-q", "-o", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )
    return out


def _example(adapter: str) -> str:
    readme = (ROOT / "packages" / adapter / "README.md").read_text()
    match = FIRST_BLOCK.search(readme)
    assert match is not None, f"{adapter}'s README has no python example"
    return match.group("code")


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_wheel_alone_runs_its_readme_example(
    adapter: str, wheels: dict[str, Path], constraints: Path, workdir: Path
) -> None:
    problem = _system_python_problem()
    if problem is not None:
        skip_unless_ci(problem)
    if os.geteuid() != 0:
        pytest.skip("running the example as an unprivileged user needs root to switch to one")
    venv = workdir / adapter
    subprocess.run(["uv", "venv", "-q", "--python", SYSTEM_PYTHON, str(venv)],
                   check=True, capture_output=True, timeout=120)
    install = subprocess.run(
        ["uv", "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
         "-c", str(constraints), str(wheels["securepy-core"]), str(wheels[adapter])],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    code = _example(adapter)
    script = workdir / f"{adapter}.py"
    script.write_text(code + WALL_CHECK)
    subprocess.run(["chmod", "-R", "a+rX", str(workdir)], check=True)
    expected = [line[3:] for line in code.splitlines() if line.startswith("#> ")]
    expected.append("wall: namespaces")
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(workdir)}
    for prefix in ([], UNPRIVILEGED):
        run = subprocess.run(
            [*prefix, str(venv / "bin" / "python"), str(script)],
            capture_output=True, text=True, timeout=180, cwd=workdir, env=environment,
            check=False,
        )
        who = "an unprivileged user" if prefix else "root"
        assert run.returncode == 0, f"as {who}:\n{run.stderr[-3000:]}"
        assert run.stdout.splitlines()[-len(expected):] == expected, f"as {who}:\n{run.stdout}"
