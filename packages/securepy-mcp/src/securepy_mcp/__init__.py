"""securepy for MCP: the sandbox as an MCP server, and MCP tools callable from sandboxed code.

Serve a sandboxed ``run_python`` tool to any MCP client::

    securepy-mcp                        # stdio, from a client's config
    securepy-mcp --http 127.0.0.1:8765  # streamable HTTP

or, in Python, ``securepy_mcp.serve(tools=[...])``. Code mode, the other way round: the tools
of any MCP server become plain functions inside the sandbox::

    with securepy_mcp.mcp_tools({"command": "my-mcp-server"}) as tools:
        with securepy.Session(tools=tools) as session:
            session.execute("rows = query(sql='select 1')")
"""

from __future__ import annotations

from ._bridge import McpTools as McpTools
from ._bridge import from_mcp_session as from_mcp_session
from ._bridge import mcp_tools as mcp_tools
from ._names import python_names as python_names
from ._serve import http_app as http_app
from ._serve import serve as serve
from ._server import SecurePyServer as SecurePyServer
from ._server import server as server
from ._servers import load_config as load_config

__version__ = "0.1.0"

__all__ = [
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

for _name in (
    "McpTools",
    "SecurePyServer",
    "from_mcp_session",
    "http_app",
    "load_config",
    "mcp_tools",
    "python_names",
    "serve",
    "server",
):
    globals()[_name].__module__ = "securepy_mcp"
del _name
