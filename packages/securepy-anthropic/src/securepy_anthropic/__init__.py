"""securepy for Anthropic: the sandbox as a tool, and Anthropic tools inside the sandbox.

    import anthropic
    import securepy_anthropic

    run_python = securepy_anthropic.securepy_tool(tools=[lookup_order])
    reply = client.messages.create(..., tools=[run_python.definition])
    results = [run_python.handle(block) for block in reply.content if block.type == "tool_use"]

or ``client.beta.messages.tool_runner(..., tools=[run_python.beta_tool])``.
``from_anthropic_tool`` turns ``@beta_tool`` objects and ``(definition, fn)`` pairs into securepy
tools; ``securepy_tool(tools=...)`` takes them directly.
"""

from __future__ import annotations

from ._convert import from_anthropic_tool as from_anthropic_tool
from ._tool import SecurePyTool as SecurePyTool
from ._tool import securepy_tool as securepy_tool

__version__ = "0.1.0"

__all__ = ["SecurePyTool", "__version__", "from_anthropic_tool", "securepy_tool"]

for _name in ("SecurePyTool", "from_anthropic_tool", "securepy_tool"):
    globals()[_name].__module__ = "securepy_anthropic"
del _name
