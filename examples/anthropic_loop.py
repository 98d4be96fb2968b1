"""An Anthropic tool-use loop where the model writes Python that calls a host function.

    uv run python examples/anthropic_loop.py

Offline by default: a small fake model server on 127.0.0.1, started here, plays Claude with
scripted turns (one of them fails, to show an error result). With ANTHROPIC_API_KEY set, the
same loop talks to the real API (model from ANTHROPIC_MODEL, default below). The code runs in
the bubblewrap sandbox; set SECUREPY_SANDBOX=0 to run it unsandboxed, explicitly.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import securepy_anthropic

ORDERS = {1: {"item": "lamp", "total": 40.0}, 2: {"item": "desk", "total": 210.0},
          3: {"item": "chair", "total": 95.5}}

LOOKUP_ORDER = {
    "name": "lookup_order",
    "description": "One order from the shop's database: item and total.",
    "input_schema": {"type": "object", "properties": {"order_id": {"type": "integer"}},
                     "required": ["order_id"]},
}


def lookup_order(order_id: int) -> dict[str, Any]:
    # Runs on the host; the sandboxed code only sees what this returns.
    return ORDERS[order_id]


def main() -> None:
    """Run the loop offline, or against the real API when a key is set."""
    sandbox = os.environ.get("SECUREPY_SANDBOX", "1") != "0"
    run_python = securepy_anthropic.securepy_tool(
        tools=[securepy_anthropic.from_anthropic_tool(LOOKUP_ORDER, lookup_order)],
        sandbox=sandbox, timeout=20)
    question = "What is the total of orders 1, 2 and 3? Also try order 99. Use run_python."
    with run_python:
        if os.environ.get("ANTHROPIC_API_KEY"):
            with anthropic.Anthropic() as client:
                answer = tool_use_loop(client, run_python, question,
                                       os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-5"))
        else:
            server = FakeClaude(SCRIPT)
            try:
                with anthropic.Anthropic(base_url=server.url, api_key="offline",
                                         max_retries=0) as client:
                    answer = tool_use_loop(client, run_python, question, "claude-fake")
            finally:
                server.close()
    print(f"answer: {answer}")


def tool_use_loop(client: anthropic.Anthropic, run_python: securepy_anthropic.SecurePyTool,
                  question: str, model: str) -> str:
    """Ask, run each tool_use block in the sandbox, send the results back, until the end."""
    messages: list[Any] = [{"role": "user", "content": question}]
    for _ in range(8):
        response = client.messages.create(model=model, max_tokens=1024, messages=messages,
                                          tools=[run_python.definition])
        messages.append({"role": "assistant", "content": response.content})
        if response.stop_reason != "tool_use":
            return "".join(b.text for b in response.content if b.type == "text")
        results = []
        for block in response.content:
            if block.type == "tool_use":
                print(f"model ran:\n{block.input.get('code')}")
                result = run_python.handle(block)
                print(f"result (is_error={result['is_error']}):\n{result['content']}\n")
                results.append(result)
        messages.append({"role": "user", "content": results})
    return "(stopped after 8 turns)"


_TURN_IDS = itertools.count(1)


def _turn(code: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{next(_TURN_IDS)}", "name": "run_python",
            "input": {"code": code}}


def _final_answer(body: dict[str, Any]) -> dict[str, Any]:
    # The fake model's last turn quotes what it read, as a real model would summarize it.
    earlier = body["messages"][-3]["content"][0]["content"]
    last = body["messages"][-1]["content"][0]
    outcome = "failed" if last.get("is_error") else "worked"
    lines = str(last["content"]).splitlines()
    return {"type": "text", "text": f"The three orders total {earlier}; order 99 {outcome} "
                                    f"({lines[-1] if lines else ''})."}


SCRIPT: list[Callable[[dict[str, Any]], list[dict[str, Any]]] | list[dict[str, Any]]] = [
    [_turn("orders = {i: lookup_order(i) for i in (1, 2, 3)}\n"
           "print(sorted(o['item'] for o in orders.values()))")],
    [_turn("sum(o['total'] for o in orders.values())")],   # `orders` persists between turns
    [_turn("lookup_order(99)")],
    lambda body: [_final_answer(body)],
]


class FakeClaude:
    """Plays the Messages API on 127.0.0.1: each POST gets the next scripted turn."""

    def __init__(self, script: list[Any]) -> None:
        turns = list(script)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                turn = turns.pop(0)
                content = turn(body) if callable(turn) else turn
                reply = json.dumps({
                    "id": f"msg_{len(turns)}", "type": "message", "role": "assistant",
                    "model": body["model"], "content": content, "stop_sequence": None,
                    "stop_reason": "tool_use" if content[0]["type"] == "tool_use" else "end_turn",
                    "usage": {"input_tokens": 0, "output_tokens": 0}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


if __name__ == "__main__":
    main()
