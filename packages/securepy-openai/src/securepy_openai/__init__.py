"""securepy for OpenAI: the sandbox as a tool, and OpenAI tools inside the sandbox.

    from openai import OpenAI
    import securepy_openai

    sandbox = securepy_openai.securepy_tool(tools=[lookup_order])
    final = securepy_openai.run_tools(OpenAI(), model="gpt-5", tools=[sandbox],
                                      messages=[{"role": "user", "content": "..."}])

``from_openai_tool`` is the preferred conversion (``from_openai_function`` and
``from_pydantic`` stay for the definition and pydantic forms). The Agents SDK integration is in
:mod:`securepy_openai.agents` (extra ``[agents]``).
"""

from __future__ import annotations

from ._convert import from_openai_function as from_openai_function
from ._convert import from_openai_tool as from_openai_tool
from ._convert import from_pydantic as from_pydantic
from ._loop import arun_response_tools as arun_response_tools
from ._loop import arun_tools as arun_tools
from ._loop import run_response_tools as run_response_tools
from ._loop import run_tools as run_tools
from ._tool import SecurePyTool as SecurePyTool
from ._tool import securepy_tool as securepy_tool

__version__ = "0.1.0"

__all__ = [
    "SecurePyTool",
    "__version__",
    "arun_response_tools",
    "arun_tools",
    "from_openai_function",
    "from_openai_tool",
    "from_pydantic",
    "run_response_tools",
    "run_tools",
    "securepy_tool",
]

for _name in (
    "SecurePyTool",
    "securepy_tool",
    "from_openai_tool",
    "from_openai_function",
    "from_pydantic",
    "run_tools",
    "arun_tools",
    "run_response_tools",
    "arun_response_tools",
):
    globals()[_name].__module__ = "securepy_openai"
del _name
