"""The child loads only the standard library and the worker package."""

from __future__ import annotations

import sys

import pytest
import securepy


@pytest.mark.parametrize("sandbox", [pytest.param(True, marks=pytest.mark.sandbox), False],
                         ids=["sandboxed", "unsandboxed"])
def test_child_modules_are_stdlib_or_worker(sandbox: bool) -> None:
    with securepy.Session(sandbox=sandbox) as session:
        names = session.execute("import sys\nsorted(sys.modules)").value
    foreign = [n for n in names if n.split(".")[0] not in sys.stdlib_module_names
               and n.split(".")[0] not in ("_securepy_worker", "securepy_tools", "__main__")]
    assert foreign == []
    assert "securepy" not in names
