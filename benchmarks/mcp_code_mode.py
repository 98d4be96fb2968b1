"""Code mode against model-side tool calls, and the bridge's cost per MCP tool call.

    uv run python benchmarks/mcp_code_mode.py              # sandbox=True when available
    uv run python benchmarks/mcp_code_mode.py --no-sandbox --quick

A task needs 20 calls of an MCP tool (``get-order``, over stdio, from a server this file
starts). Done by a model calling the tool directly, each call is a model round trip, and each
result travels to the model. Done in code mode, the model sends one ``run_python`` snippet that
makes the 20 calls through the bridge, and only the snippet's answer travels back. The first
table counts the round trips and bytes either way (bytes are what a model would read, or
write, as JSON text). The second times one tool call: ``ClientSession.call_tool`` directly,
against the same call from sandboxed code through the bridge (a ``tools/call`` each way; the
difference is securepy's tool-call path plus the hop onto the client's loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import mcp
import securepy
import securepy_mcp

N_CALLS = 20
ORDER_IDS = list(range(1001, 1001 + N_CALLS))
SNIPPET = f"""
orders = [get_order(order_id=i) for i in {ORDER_IDS!r}]
late = [o['id'] for o in orders if o['status'] == 'late']
f"{{len(orders)}} orders, total {{sum(o['total'] for o in orders):.2f}}, late: {{late}}"
"""


def serve_orders() -> None:
    """The orders MCP server (``python mcp_code_mode.py --serve``)."""
    from mcp.server import MCPServer

    app = MCPServer("orders")

    @app.tool(name="get-order")
    def get_order(order_id: int) -> dict[str, Any]:
        """One order with its lines, as a typical API returns it."""
        return {
            "id": order_id,
            "status": "late" if order_id % 7 == 0 else "shipped",
            "customer": {"id": order_id * 3, "name": f"Customer {order_id}", "tier": "gold"},
            "lines": [{"sku": f"SKU-{order_id}-{n}", "qty": n, "price": 9.5 + n} for n in range(4)],
            "total": round(sum(n * (9.5 + n) for n in range(4)) + order_id / 100, 2),
            "created_at": "2026-11-30T12:00:00Z",
        }

    app.run("stdio")


SERVER = mcp.StdioServerParameters(command=sys.executable, args=[__file__, "--serve"])


async def model_side() -> tuple[int, int, int]:
    """What 20 direct tool calls cost a model: (round trips, bytes to it, bytes from it)."""
    to_model = from_model = 0
    async with mcp.Client(SERVER) as client:
        for order_id in ORDER_IDS:
            arguments = {"order_id": order_id}
            from_model += len(json.dumps({"name": "get-order", "arguments": arguments}))
            result = await client.call_tool("get-order", arguments)
            to_model += len(json.dumps(result.structured_content))
    return N_CALLS, to_model, from_model


def code_mode(sandbox: bool) -> tuple[int, int, int, str]:
    """The same task as one run_python snippet: (round trips, bytes to, bytes from, answer)."""
    with (
        securepy_mcp.mcp_tools(SERVER) as tools,
        securepy.Session(tools=tools, sandbox=sandbox) as session,
    ):
        execution = session.execute(SNIPPET)
        assert len(execution.tool_calls) == N_CALLS
        answer = execution.render_text()
    from_model = len(json.dumps({"name": "run_python", "arguments": {"code": SNIPPET}}))
    return 1, len(answer), from_model, answer


class DirectClient:
    """A ClientSession held open by one task of a long-lived loop (anyio needs one task)."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.requests: asyncio.Queue[tuple[int, asyncio.Future[float]]] | None = None
        self.runner.run(self._start())

    async def _start(self) -> None:
        self.requests = asyncio.Queue()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.worker = asyncio.ensure_future(self._serve(ready))
        await ready

    async def _serve(self, ready: asyncio.Future[None]) -> None:
        assert self.requests is not None
        async with mcp.Client(SERVER) as client:
            await client.call_tool("get-order", {"order_id": 1})
            ready.set_result(None)
            while True:
                calls, done = await self.requests.get()
                started = time.perf_counter()
                for _ in range(calls):
                    await client.call_tool("get-order", {"order_id": 1})
                done.set_result((time.perf_counter() - started) / calls)

    def seconds_per_call(self, calls: int) -> float:
        async def ask() -> float:
            assert self.requests is not None
            done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            await self.requests.put((calls, done))
            return await done

        return self.runner.run(ask())

    def close(self) -> None:
        self.worker.cancel()
        self.runner.run(asyncio.wait([self.worker]))
        self.runner.close()


def call_times(calls: int, rounds: int, sandbox: bool) -> tuple[list[float], list[float]]:
    """Seconds per call, direct and bridged, rounds interleaved so drift hits both alike.

    Bridged: (an execute making ``calls`` calls - an empty execute) / ``calls``.
    """
    loop = f"for _ in range({calls}):\n    get_order(order_id=1)"
    direct, bridged = [], []
    client = DirectClient()
    try:
        with (
            securepy_mcp.mcp_tools(SERVER) as tools,
            securepy.Session(tools=tools, sandbox=sandbox) as session,
        ):
            session.execute("get_order(order_id=1)")
            for _ in range(rounds):
                direct.append(client.seconds_per_call(calls))
                started = time.perf_counter()
                session.execute(loop)
                with_calls = time.perf_counter() - started
                started = time.perf_counter()
                session.execute("for _ in range(0):\n    pass")
                empty = time.perf_counter() - started
                bridged.append((with_calls - empty) / calls)
    finally:
        client.close()
    return direct, bridged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-sandbox", action="store_true", help="sandbox=False sessions")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    sandbox = not args.no_sandbox
    calls, rounds = (50, 5) if args.quick else (200, 15)

    trips_m, to_m, from_m = asyncio.run(model_side())
    trips_c, to_c, from_c, answer = code_mode(sandbox)
    print(f"task: {N_CALLS} calls of an MCP tool (get-order over stdio); sandbox={sandbox}")
    print(f"answer in code mode: {answer}\n")
    print("| | model round trips | bytes to the model | bytes from the model |")
    print("|---|---:|---:|---:|")
    print(f"| {N_CALLS} model-side tool calls | {trips_m} | {to_m:,} | {from_m:,} |")
    print(f"| one code-mode snippet | {trips_c} | {to_c:,} | {from_c:,} |")
    print(f"| ratio | {trips_m / trips_c:.0f}x | {to_m / to_c:.0f}x | {from_m / from_c:.1f}x |")
    print(f"\nMCP tools/call round trips host to server: {N_CALLS} either way\n")

    direct, bridged = call_times(calls, rounds, sandbox)
    d, b = statistics.median(direct), statistics.median(bridged)
    print(f"| one MCP tool call ({rounds} rounds of {calls}) | median | min | max |")
    print("|---|---:|---:|---:|")
    print(
        f"| `ClientSession.call_tool` | {d * 1e6:.0f} µs | {min(direct) * 1e6:.0f} µs | "
        f"{max(direct) * 1e6:.0f} µs |"
    )
    print(
        f"| from sandboxed code, through the bridge | {b * 1e6:.0f} µs | "
        f"{min(bridged) * 1e6:.0f} µs | {max(bridged) * 1e6:.0f} µs |"
    )
    print(f"| bridge overhead per call | {(b - d) * 1e6:.0f} µs | | |")


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve_orders()
    else:
        main()
