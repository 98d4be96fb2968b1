"""LangChain's own standard tool tests (langchain-tests), run through SecurePyTool as a class."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests
from securepy_langchain import SecurePyTool


class TestSecurePyToolUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[SecurePyTool]:
        return SecurePyTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"name": "run_python", "description": "Run Python in a sandbox."}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"code": "print('hi')\n6 * 7"}


@pytest.mark.sandbox
class TestSecurePyToolIntegration(ToolsIntegrationTests):
    """Invokes the tool for real, in the sandbox (offline: the code needs no network)."""

    @property
    def tool_constructor(self) -> type[SecurePyTool]:
        return SecurePyTool

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"code": "print('hi')\n6 * 7"}

    @pytest.fixture
    def tool(self) -> Iterator[BaseTool]:  # the standard fixture, plus closing the session
        tool = self.tool_constructor(**self.tool_constructor_params)
        yield tool
        tool.close()
