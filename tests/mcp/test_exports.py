"""securepy_mcp's public face: exactly these names, each reporting the package."""

from __future__ import annotations

import securepy_mcp

EXPECTED = [
    "McpTools",
    "SecurePyServer",
    "__version__",
    "from_mcp_session",
    "http_app",
    "load_config",
    "mcp_tools",
    "python_names",
    "serve",
    "server",
]


def test_all_is_pinned() -> None:
    assert securepy_mcp.__all__ == EXPECTED


def test_every_name_exists_and_reports_the_package() -> None:
    for name in EXPECTED:
        if name == "__version__":
            assert securepy_mcp.__version__ == "0.1.0"
            continue
        assert getattr(securepy_mcp, name).__module__ == "securepy_mcp"


def test_the_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "securepy-mcp"]
    assert script.value == "securepy_mcp._cli:main"


def test_the_classes_are_final() -> None:
    assert securepy_mcp.McpTools.__final__ is True  # type: ignore[attr-defined]
    assert securepy_mcp.SecurePyServer.__final__ is True  # type: ignore[attr-defined]
