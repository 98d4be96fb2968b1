"""OpenAI tool loops where the model writes Python that calls a host function.

    uv run python examples/openai_loop.py

Offline by default: a small fake model server on 127.0.0.1, started here, plays the OpenAI API
with scripted turns (one of them fails, to show an error output). It runs the same question
through Chat Completions (the loop written out, as you would with your own client) and through
the Responses API (with ``securepy_openai.run_response_tools``, the loop done for you). With
OPENAI_API_KEY set, both talk to the real API (model from OPENAI_MODEL, default below). The code
runs in the bubblewrap sandbox; set SECUREPY_SANDBOX=0 to run it unsandboxed, explicitly.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import securepy_openai

ORDERS = {1: {"item": "lamp", "total": 40.0}, 2: {"item": "desk", "total": 210.0},
          3: {"item": "chair", "total": 95.5}}

LOOKUP_ORDER = {"type": "function", "function": {
    "name": "lookup_order", "description": "One order from the shop's database: item and total.",
    "strict": True,
    "parameters": {"type": "object", "properties": {"order_id": {"type": "integer"}},
                   "required": ["order_id"], "additionalProperties": False}}}
QUESTION = "What is the total of orders 1, 2 and 3? Also try order 99. Use run_python."


def lookup_order(order_id: int) -> dict[str, Any]:
    # Runs on the host; the sandboxed code only sees what this returns.
    return ORDERS[order_id]


def main() -> None:
    """Run both loops offline, or against the real API when a key is set."""
    sandbox = os.environ.get("SECUREPY_SANDBOX", "1") != "0"
    host_tool = securepy_openai.from_openai_tool(LOOKUP_ORDER, lookup_order)
    model = os.environ.get("OPENAI_MODEL", "gpt-4.1-mini")
    server = None
    if os.environ.get("OPENAI_API_KEY"):
        client = openai.OpenAI()
    else:
        server = FakeOpenAI()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="offline", max_retries=0)
        model = "fake"
    try:
        with client:
            with securepy_openai.securepy_tool(tools=[host_tool], sandbox=sandbox,
                                               timeout=20) as run_python:
                print(f"chat answer: {chat_loop(client, run_python, model)}\n")
            # A fresh session for the second conversation, and this time the loop is done
            # for us: run_response_tools asks, runs the calls, sends the outputs back.
            with securepy_openai.securepy_tool(tools=[host_tool], sandbox=sandbox,
                                               timeout=20) as run_python:
                response = securepy_openai.run_response_tools(
                    client, model=model, input=QUESTION, tools=[run_python], max_steps=8)
            print(f"responses answer: {response.output_text}")
    finally:
        if server is not None:
            server.close()


def chat_loop(client: openai.OpenAI, run_python: securepy_openai.SecurePyTool,
              model: str) -> str:
    """Ask, run each tool call in the sandbox, send the outputs back, until the answer."""
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    for _ in range(8):
        response = client.chat.completions.create(model=model, messages=messages,
                                                  tools=[run_python.chat_tool])
        message = response.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return message.content or ""
        for call in message.tool_calls:
            reply = run_python.handle(call)
            print(f"model ran:\n{json.loads(call.function.arguments)['code']}")  # type: ignore[union-attr]
            print(f"output:\n{reply['content']}\n")
            messages.append(reply)
    return "(stopped after 8 turns)"


SCRIPT = [
    "orders = {i: lookup_order(order_id=i) for i in (1, 2, 3)}\n"
    "print(sorted(o['item'] for o in orders.values()))",
    "sum(o['total'] for o in orders.values())",   # `orders` persists between turns
    "lookup_order(order_id=99)",
]
_IDS = itertools.count(1)


def _chat_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The next scripted Chat Completions turn, chosen by how many tool outputs came back."""
    outputs = [m["content"] for m in body["messages"] if m.get("role") == "tool"]
    if len(outputs) < len(SCRIPT):
        call = {"id": f"call_{next(_IDS)}", "type": "function", "function": {
            "name": "run_python", "arguments": json.dumps({"code": SCRIPT[len(outputs)]})}}
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
    else:
        message = {"role": "assistant", "content": _summary(outputs)}
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
            "model": body["model"], "choices": [{"index": 0, "message": message,
            "finish_reason": "tool_calls" if "tool_calls" in message else "stop"}]}


def _responses_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The next scripted Responses turn, chosen the same way."""
    outputs = [i["output"] for i in body["input"] if i.get("type") == "function_call_output"]
    item: dict[str, Any]
    if len(outputs) < len(SCRIPT):
        item = {"type": "function_call", "id": f"fc_{next(_IDS)}", "call_id": f"call_{next(_IDS)}",
                "name": "run_python", "arguments": json.dumps({"code": SCRIPT[len(outputs)]}),
                "status": "completed"}
    else:
        item = {"type": "message", "id": "msg_fake", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": _summary(outputs), "annotations": []}]}
    return {"id": "resp_fake", "object": "response", "created_at": 0, "model": body["model"],
            "status": "completed", "output": [item], "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": []}


def _summary(outputs: list[str]) -> str:
    # The fake model quotes what it read, as a real model would summarize it.
    return f"The three orders total {outputs[1]}; order 99 failed ({outputs[2].splitlines()[-1]})."


class FakeOpenAI:
    """Plays the OpenAI API on 127.0.0.1, following SCRIPT."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                chat = self.path.endswith("/chat/completions")
                reply = json.dumps((_chat_reply if chat else _responses_reply)(body)).encode()
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
