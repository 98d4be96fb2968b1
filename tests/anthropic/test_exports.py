"""securepy_anthropic's public face: exactly these names, each reporting the package."""

from __future__ import annotations

import securepy_anthropic

EXPECTED = ["SecurePyTool", "__version__", "from_anthropic_tool", "securepy_tool"]


def test_all_is_pinned() -> None:
    assert securepy_anthropic.__all__ == EXPECTED


def test_every_name_exists_and_reports_the_package() -> None:
    for name in EXPECTED:
        if name == "__version__":
            assert securepy_anthropic.__version__ == "0.1.0"
            continue
        assert getattr(securepy_anthropic, name).__module__ == "securepy_anthropic"


def test_the_tool_class_is_final() -> None:
    assert securepy_anthropic.SecurePyTool.__final__ is True  # type: ignore[attr-defined]
