"""The session server: configure, report ready, then run each execute until the host hangs up.
Stdlib only: runs inside the sandbox."""

from __future__ import annotations

# The C module behind signal: the Python wrapper imports enum, which costs milliseconds at
# every start and buys the worker nothing.
import _signal  # type: ignore[import-not-found]
import os
import sys
import threading
import types

from . import codec, protocol
from .broker import ToolBroker
from .connection import Connection, MessageTooLarge
from .display import Display, configure_matplotlib
from .files import Files
from .output import Outputs, capture_output
from .rlimits import apply_limits
from .runner import Runner, describe_limit, format_user_traceback
from .stubs import build_namespace

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = ["serve"]


def serve(fd: int, *, warmed: bool = False) -> None:
    """Serve one session on the socket ``fd``: configure, then run each execute until the
    host hangs up. ``warmed``: the first-run costs were taken before (by a template)."""
    connection = Connection(fd)
    config = connection.receive()
    if config.get("kind") != "configure":
        raise SystemExit("securepy worker: expected a configure message first")
    connection.max_frame_bytes = config.get("max_frame_bytes") or protocol.MAX_FRAME_BYTES
    apply_limits(config["limits"], nproc=config["nproc"],
                 address_space=config.get("address_space"),
                 thread_stack=config.get("thread_stack"))
    sys.path[:] = [p for p in config["path"] if isinstance(p, str)]
    _install_interactive_builtins()
    configure_matplotlib(config.get("font_cache"))
    broker = ToolBroker(connection)
    namespace = build_namespace(config["tools"], broker.call)
    for module in config.get("preload") or ():
        try:
            __import__(module)  # before "ready": a pool's spare sessions start with it loaded
        except BaseException as exc:  # reported to the host, then the worker exits
            connection.send(
                {
                    "kind": "error",
                    "type": type(exc).__name__,
                    "traceback": "",
                    "message": f"preload of {module!r} failed: {exc}"[:2000],
                }
            )
            raise SystemExit(1) from None
    state = _TurnState()
    _signal.signal(_signal.SIGINT, state.on_interrupt)
    outputs = capture_output(connection)
    display = Display(connection.send, outputs.flush, connection.max_frame_bytes // 2)
    import builtins

    builtins.display = display.display  # type: ignore[attr-defined]
    files = Files(connection.send, connection.send_frame, os.getcwd(),
                  connection.max_frame_bytes)
    broker.own_threads = threading.active_count()
    runner = Runner(namespace)
    if not warmed:
        runner.warm_up()
    connection.send({"kind": "ready", "version": protocol.PROTOCOL_VERSION, "pid": os.getpid()})
    while True:
        # Through the broker: a thread the code left running may be waiting on a tool reply,
        # and only one thread may read the socket at a time.
        message = broker.next_execute()
        if message["kind"] == "files":
            files.handle(message)
            continue
        _run_turn(message, runner, state, broker, outputs, connection, display)


def _install_interactive_builtins() -> None:
    """help(), exit() and quit(), which ``site`` would add but ``-S`` skips."""
    import _sitebuiltins
    import builtins

    builtins.help = _sitebuiltins._Helper()
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")


class _TurnState:
    """Whether user code is running: SIGINT interrupts user code, never the worker's own I/O."""

    def __init__(self) -> None:
        self.in_user_code = False

    def on_interrupt(self, signum: int, frame: types.FrameType | None) -> None:
        if self.in_user_code:
            raise KeyboardInterrupt


def _run_turn(
    message: dict[str, Any],
    runner: Runner,
    state: _TurnState,
    broker: ToolBroker,
    outputs: Outputs,
    connection: Connection,
    display: Display,
) -> None:
    broker.reset()
    end: dict[str, Any]
    try:
        state.in_user_code = True
        try:
            try:
                value = runner.run(message["code"], message["filename"])
            finally:
                if "matplotlib.pyplot" in sys.modules:  # open figures come back, as in Jupyter
                    display.show_figures()
        finally:
            state.in_user_code = False
        outputs.flush()
        try:
            tree = codec.encode(value)
        except codec.CodecError:
            tree = codec._opaque(value)
        end = {"kind": "result", "value": tree}
    except BaseException as exc:  # every failure of the code goes to the host
        state.in_user_code = False
        outputs.flush()
        end = _error_message(exc)
    if "turn" in message:
        end["turn"] = message["turn"]
    broker.end_turn(lambda: _send_end(connection, end))


def _send_end(connection: Connection, end: dict[str, Any]) -> None:
    try:
        connection.send(end)
    except MessageTooLarge as exc:
        connection.send(
            {
                "kind": "error",
                "type": "ValueTooLarge",
                "traceback": "",
                "message": f"the value could not be returned: {exc}",
                "limit": "output",
                **({"turn": end["turn"]} if "turn" in end else {}),
            }
        )


def _error_message(exc: BaseException) -> dict[str, Any]:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not end the worker
        text = "<exception str() failed>"
    try:
        trace = format_user_traceback(exc)
    except Exception:  # nor a traceback that cannot be formatted
        trace = ""
    return {
        "kind": "error",
        "type": type(exc).__name__,
        "message": text[:100_000],
        "traceback": trace[:100_000],
        "limit": describe_limit(exc),
    }
