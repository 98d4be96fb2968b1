"""securepy for LlamaIndex: the sandbox as a tool, and LlamaIndex tools inside the sandbox.

    from llama_index.core.agent.workflow import FunctionAgent
    from securepy_llamaindex import securepy_tool

    run_python = securepy_tool(tools=[lookup_order])     # LlamaIndex tools or functions
    agent = FunctionAgent(tools=[run_python], llm=llm)

``from_llamaindex`` is the earlier name of ``from_llamaindex_tool`` (prefer the latter).
"""

from __future__ import annotations

from ._convert import from_llamaindex as from_llamaindex
from ._convert import from_llamaindex_tool as from_llamaindex_tool
from ._tool import SecurePyTool as SecurePyTool
from ._tool import SecurePyToolSpec as SecurePyToolSpec
from ._tool import code_execute_fn as code_execute_fn
from ._tool import securepy_tool as securepy_tool

__version__ = "0.1.0"

__all__ = [
    "SecurePyTool",
    "SecurePyToolSpec",
    "__version__",
    "code_execute_fn",
    "from_llamaindex",
    "from_llamaindex_tool",
    "securepy_tool",
]

for _name in (
    "SecurePyTool",
    "SecurePyToolSpec",
    "code_execute_fn",
    "from_llamaindex_tool",
    "securepy_tool",
):
    globals()[_name].__module__ = "securepy_llamaindex"
del _name
