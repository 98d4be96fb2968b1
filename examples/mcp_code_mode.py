"""MCP both ways round: an MCP server's tools inside the sandbox, and the sandbox as an MCP server.

1. Code mode. This file is also a small MCP server (an inventory, over stdio). The sandboxed
   code calls its tools as plain Python functions: one snippet makes 22 tool calls, loops and
   filters on the host's answers, and only the short result would go back to a model, instead
   of 22 model round trips each carrying a tool result.
2. The sandbox as an MCP server: the SDK's client calls securepy's ``run_python`` tool, whose
   code calls a host function and the inventory server's tools.

Run it with

    uv run python examples/mcp_code_mode.py

Set SECUREPY_SANDBOX=0 to run without bubblewrap (unsafe: for machines without it).
"""

from __future__ import annotations

import asyncio
import os
import sys

import mcp
import securepy
import securepy_mcp

STOCK = {f"SKU-{n:02d}": (n * 7) % 23 for n in range(1, 21)}


def serve_inventory() -> None:
    """The inventory MCP server (run as ``python mcp_code_mode.py --serve-inventory``)."""
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    inventory = MCPServer("inventory")

    @inventory.tool(name="list-skus")
    def list_skus() -> list[str]:
        """Every SKU in the warehouse."""
        return sorted(STOCK)

    @inventory.tool(name="stock-level")
    def stock_level(sku: str) -> dict[str, object]:
        """How many of a SKU are on the shelf."""
        if sku not in STOCK:
            raise ToolError(f"unknown SKU {sku!r}")
        return {"sku": sku, "on_hand": STOCK[sku]}

    inventory.run("stdio")


INVENTORY = {"command": sys.executable, "args": [__file__, "--serve-inventory"]}

SNIPPET = """
low = [level for level in (stock_level(sku) for sku in list_skus()) if level['on_hand'] < 5]
try:
    stock_level('SKU-99')
except ToolError as exc:
    print('caught:', exc)
', '.join(f"{level['sku']}={level['on_hand']}" for level in low)
"""


def code_mode(sandbox: bool) -> None:
    with (
        securepy_mcp.mcp_tools(INVENTORY) as tools,
        securepy.Session(tools=tools, sandbox=sandbox) as session,
    ):
        print("tools inside the sandbox:", ", ".join(tool.signature() for tool in tools))
        execution = session.execute(SNIPPET)
        print(execution.stdout.strip())
        print(f"{len(execution.tool_calls)} MCP tool calls in one execute")
        print("low stock:", execution.value)


def reorder(sku: str, quantity: int) -> str:
    """Place a purchase order (a host function: it runs outside the sandbox)."""
    return f"ordered {quantity} x {sku}"


async def as_a_server(sandbox: bool) -> None:
    app = securepy_mcp.server(
        tools=[reorder], mcp_servers={"inventory": INVENTORY}, sandbox=sandbox
    )
    async with mcp.Client(app) as client:  # in-process; a real client uses stdio or HTTP
        code = "[reorder(sku, 10) for sku in list_skus() if stock_level(sku)['on_hand'] < 3]"
        result = await client.call_tool("run_python", {"code": code})
        print("run_python:", result.content[0].text)
        failed = await client.call_tool("run_python", {"code": "undefined_name"})
        print("an error comes back as isError:", failed.is_error)


def main() -> None:
    sandbox = os.environ.get("SECUREPY_SANDBOX", "1") != "0"
    code_mode(sandbox)
    asyncio.run(as_a_server(sandbox))


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-inventory"]:
        serve_inventory()
    else:
        main()
