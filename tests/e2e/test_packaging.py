"""The package set as released: every wheel `uv build --all-packages` makes carries the MIT
LICENSE and full metadata, and its PyPI description has no link that breaks off the repository.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import re
import tomllib
import zipfile
from pathlib import Path

import pytest

from .conftest import PACKAGES, ROOT

LICENSE = (ROOT / "LICENSE").read_text()


def _metadata(wheel: Path) -> tuple[email.message.Message, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(name for name in names if name.endswith(".dist-info/METADATA"))
        text = archive.read(info).decode()
    message = email.parser.Parser(policy=email.policy.compat32).parsestr(text)
    return message, names


def test_the_license_is_mit_everywhere() -> None:
    assert LICENSE.startswith("MIT License\n")
    for package in PACKAGES:
        project = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())
        assert project["project"]["license"] == "MIT"
        # each package carries its own copy (hatchling takes license files from the package
        # directory only); a copy that drifted from the root one is a mistake
        assert (ROOT / "packages" / package / "LICENSE").read_text() == LICENSE


@pytest.mark.slow
@pytest.mark.parametrize("package", PACKAGES)
def test_each_wheel_carries_license_and_full_metadata(
    package: str, wheels: dict[str, Path]
) -> None:
    metadata, names = _metadata(wheels[package])
    with zipfile.ZipFile(wheels[package]) as archive:
        license_file = next(name for name in names if name.endswith(".dist-info/licenses/LICENSE"))
        assert archive.read(license_file).decode() == LICENSE
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Author"]
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Typing :: Typed" in classifiers
    assert any(name.endswith("/py.typed") for name in names)
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert description.startswith(f"# {package}\n")
    assert "```python" in description and len(description) > 1500  # a real page, with an example
    # on PyPI a relative link points nowhere
    relative = re.findall(r"\]\((?!https?://|#)([^)]*)\)", description)
    assert relative == []


@pytest.mark.slow
def test_python_dash_m_securepy_is_in_the_core_wheel(wheels: dict[str, Path]) -> None:
    _, names = _metadata(wheels["securepy-core"])
    assert "securepy/__main__.py" in names
