"""A real MCP server for the bridge tests, over stdio or streamable HTTP.

python demo_server.py                 stdio
python demo_server.py --http PORT     streamable HTTP on 127.0.0.1:PORT (0: a free port,
                                      printed on stderr as "serving http://...")
"""

from __future__ import annotations

import os
import socket
import sys

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Image
from mcp.server.mcpserver.exceptions import ToolError

app = MCPServer("demo")
calls: list[str] = []


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool(name="get-user")
def get_user(user_id: int) -> dict[str, object]:
    """A user record (a structured result)."""
    return {"id": user_id, "name": f"user{user_id}", "host_pid": os.getpid()}


@app.tool(name="query.rows", structured_output=False)
def query_rows(limit: int = 3) -> str:
    """Rows as JSON text (an unstructured result)."""
    import json

    return json.dumps([{"n": n, "square": n * n} for n in range(limit)])


@app.tool(structured_output=False)
def shout(text: str) -> str:
    """Plain text back, upper-cased."""
    return text.upper() + "!"


@app.tool()
def fail(reason: str) -> str:
    """Always fails with ``reason``."""
    raise ToolError(reason)


@app.tool()
def pixel() -> Image:
    """A 1x1 PNG."""
    return Image(data=bytes.fromhex("89504e470d0a1a0a"), format="png")


@app.tool()
def die() -> str:
    """Kills this server process in the middle of the call."""
    os._exit(3)


@app.tool(name="list")
def list_tool() -> list[str]:
    """A tool whose name is a Python builtin."""
    return ["a", "b"]


async def _serve_http(port: int) -> None:
    sock = socket.create_server(("127.0.0.1", port))
    print(f"serving http://127.0.0.1:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)
    config = uvicorn.Config(app.streamable_http_app(), log_level="warning")
    with sock:
        await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        anyio.run(_serve_http, int(sys.argv[2]))
    else:
        app.run("stdio")
