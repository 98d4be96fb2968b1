"""securepy_langchain's public face: exactly these names, each reporting the package."""

from __future__ import annotations

import securepy_langchain

EXPECTED = ["RunPythonInput", "SecurePyTool", "__version__", "from_langchain", "securepy_tool"]


def test_all_is_pinned() -> None:
    assert securepy_langchain.__all__ == EXPECTED


def test_every_name_exists_and_reports_the_package() -> None:
    for name in EXPECTED:
        if name == "__version__":
            continue
        assert getattr(securepy_langchain, name).__module__ == "securepy_langchain"
