"""The public face of securepy_llamaindex."""

from __future__ import annotations

import securepy_llamaindex

PUBLIC = [
    "SecurePyTool",
    "SecurePyToolSpec",
    "__version__",
    "code_execute_fn",
    "from_llamaindex",
    "from_llamaindex_tool",
    "securepy_tool",
]


def test_all_is_the_contract() -> None:
    assert sorted(securepy_llamaindex.__all__) == sorted(PUBLIC)


def test_every_public_name_exists_and_reads_as_the_package() -> None:
    for name in PUBLIC:
        assert hasattr(securepy_llamaindex, name), name
        if name not in ("__version__", "from_llamaindex"):  # from_llamaindex: an alias
            assert getattr(securepy_llamaindex, name).__module__ == "securepy_llamaindex"


def test_version() -> None:
    assert securepy_llamaindex.__version__ == "0.1.0"
