"""What the end-to-end tests share: the wheels of this checkout, built once."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(path.parent.name for path in ROOT.glob("packages/*/pyproject.toml"))


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
