"""securepy for LangChain: the sandbox as a LangChain tool, and LangChain tools in the sandbox.

    from securepy_langchain import securepy_tool
    chat.bind_tools([securepy_tool(tools=[search_orders, refund])])

``from_langchain`` is the earlier name of ``from_langchain_tool`` (prefer the latter).
"""

from __future__ import annotations

from ._convert import from_langchain as from_langchain
from ._convert import from_langchain_tool as from_langchain_tool
from ._tool import RunPythonInput as RunPythonInput
from ._tool import SecurePyTool as SecurePyTool
from ._tool import securepy_tool as securepy_tool

__version__ = "0.1.0"

__all__ = [
    "RunPythonInput",
    "SecurePyTool",
    "__version__",
    "from_langchain",
    "from_langchain_tool",
    "securepy_tool",
]

for _name in ("RunPythonInput", "SecurePyTool", "from_langchain_tool", "securepy_tool"):
    globals()[_name].__module__ = "securepy_langchain"
del _name
