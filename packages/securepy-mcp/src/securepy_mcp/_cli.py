"""The ``securepy-mcp`` command: the sandbox as an MCP server, from a client's config.

    securepy-mcp                                   stdio (what a desktop or IDE client starts)
    securepy-mcp --http 127.0.0.1:8765             streamable HTTP at http://127.0.0.1:8765/mcp
    securepy-mcp --tools mytools:TOOLS --mcp-config servers.json --timeout 60 --memory 1G

Exit status: 0 when the client ends the session; 2 for a usage error (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import securepy

from ._serve import TOKEN_ENV, serve
from ._servers import load_config

__all__ = ["main"]

EXIT_USAGE = 2
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)(?:I?B)?\s*$", re.IGNORECASE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``securepy-mcp`` command line.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = _parser().parse_args(argv)
    try:
        options = _server_options(args)
        host, port = _host_port(args.http) if args.http else ("127.0.0.1", 0)
    except (ValueError, TypeError, ImportError, AttributeError, OSError) as exc:
        print(f"securepy-mcp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            transport="http" if args.http else "stdio",
            host=host,
            port=port,
            token=token,
            allowed_hosts=args.allow_host,
            **options,
        )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="securepy-mcp",
        description="Serve a sandboxed run_python tool over MCP (stdio unless --http).",
    )
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp (e.g. "
        "127.0.0.1:8765; a bare PORT binds 127.0.0.1)",
    )
    parser.add_argument("--token", help=f"bearer token HTTP clients must send (or set {TOKEN_ENV})")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="another Host header value to accept over HTTP (repeatable)",
    )
    parser.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="host tools: a securepy.Tool, function, or list of them "
        "(repeatable; the current directory is importable)",
    )
    parser.add_argument(
        "--mcp-config",
        metavar="FILE",
        help='a JSON file {"mcpServers": {...}} whose servers\' tools the code can call',
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds per run (default 30)",
    )
    parser.add_argument("--memory", metavar="SIZE", help="memory limit per sandbox, e.g. 1G")
    parser.add_argument(
        "--wall",
        choices=["auto", "namespaces", "landlock"],
        default=None,
        help="pin the sandbox wall (default: securepy picks the first that can run)",
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run code UNSANDBOXED on this host (only for trusted code)",
    )
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        metavar="N",
        help="sandboxes open at once, one per client (default: 1 for stdio, 4 for HTTP)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="close an HTTP client's sandbox after this long unused",
    )
    parser.add_argument("--name", default="securepy", help="the server name clients show")
    return parser


def _server_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "tools": [tool for spec in args.tools for tool in _load_tools(spec)],
        "timeout": args.timeout,
        "idle_timeout": args.idle_timeout,
        "name": args.name,
    }
    if args.max_sessions is not None:
        options["max_sessions"] = args.max_sessions
    if args.mcp_config:
        options["mcp_servers"] = load_config(args.mcp_config)
    if args.memory is not None:
        options["limits"] = securepy.Limits(memory_bytes=_parse_size(args.memory))
    if args.no_sandbox:
        options["sandbox"] = False
    elif args.wall is not None:
        options["wall"] = args.wall
    return options


def _load_tools(spec: str) -> list[Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--tools takes MODULE:ATTR (e.g. mytools:TOOLS), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    value = importlib.import_module(module_name)
    for part in attr.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, list | tuple) else [value]


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--http takes HOST:PORT (e.g. 127.0.0.1:8765), got {text!r}")
    return host, int(port)


def _parse_size(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"--memory takes a size like 512M or 2G, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


if __name__ == "__main__":
    sys.exit(main())
