"""What the end-to-end tests share: the wheels of this checkout, built once, and fresh virtual
environments made of them on the system's interpreter."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import SYSTEM_PYTHON, skip_unless_ci, system_python_problem

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(path.parent.name for path in ROOT.glob("packages/*/pyproject.toml"))
UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each package's wheel, as ``uv build --all-packages`` makes it, by distribution name."""
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to build the packages (pip install uv)"
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [uv, "build", "--all-packages", "--wheel", "--offline", "-q", "-o", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    built = {path.name.split("-")[0].replace("_", "-"): path for path in out.glob("*.whl")}
    assert sorted(built) == PACKAGES
    return built


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A directory every user may read (pytest's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="securepy-e2e-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def fresh_venv(wheels: dict[str, Path], workdir: Path) -> Callable[[str, list[str]], Path]:
    """``fresh_venv(name, packages)``: a new venv on the system's interpreter (which every user
    can run, so the venv serves root, an unprivileged user and a Landlock session's uid)
    holding only these wheels and what they declare, at uv.lock's versions (its files come
    from uv's cache; the registry is asked only for its indexes), readable by every user.
    Returns its python."""
    problem = system_python_problem()
    if problem is not None:
        skip_unless_ci(problem)
    constraints = workdir / "constraints.txt"
    subprocess.run(
        ["uv", "export", "--frozen", "--all-packages", "--no-dev", "--no-hashes",
         "--no-emit-workspace", "--no-header", "-q", "-o", str(constraints)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )

    def make(name: str, packages: list[str]) -> Path:
        venv = workdir / name
        subprocess.run(["uv", "venv", "-q", "--python", SYSTEM_PYTHON, str(venv)],
                       check=True, capture_output=True, timeout=120)
        python = venv / "bin" / "python"
        install = subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(python), "-c", str(constraints),
             *(str(wheels[package]) for package in packages)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert install.returncode == 0, install.stderr[-3000:]
        subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
        return python

    return make
