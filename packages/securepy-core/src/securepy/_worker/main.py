"""The worker's main loop and the in-sandbox tool functions. Stdlib only: runs inside the sandbox.

Started by a few-line bootstrap (``python -I -S -c ...``) that loads this package by path, so
the sandboxed interpreter needs no securepy installed and never imports the host package.
"""

from __future__ import annotations

# The C modules behind socket and signal: the Python wrappers import enum, which costs
# milliseconds at every start and buys the worker nothing.
import _signal  # type: ignore[import-not-found]
import _socket
import _thread
import io
import keyword
import os
import resource
import select
import sys
import threading
import time
import types

from . import codec, protocol
from .runner import Runner, describe_limit, format_user_traceback

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = ["PolicyError", "ToolError", "main"]


class ToolError(Exception):
    """A host tool failed. ``tool`` is its name, ``type_name`` the host exception's type."""

    def __init__(self, message: str, *, tool: str = "", type_name: str = "") -> None:
        super().__init__(message)
        self.tool = tool
        self.type_name = type_name


class PolicyError(Exception):
    """The host's policy refused this tool call (approval denied, or a call limit reached)."""

    def __init__(self, message: str, *, tool: str = "") -> None:
        super().__init__(message)
        self.tool = tool


# Tracebacks name an exception by its module: show the public one, not the worker's.
ToolError.__module__ = PolicyError.__module__ = "securepy_tools"


def main() -> None:
    """The bootstrap's entry: ``<worker dir> <fd>`` serves one session on the socket ``fd``;
    ``<worker dir> <fd> template <seccomp fd>`` serves a template's control socket."""
    if len(sys.argv) > 3 and sys.argv[3] == "template":
        from .template import serve_template

        serve_template(int(sys.argv[2]), int(sys.argv[4]))
    else:
        serve(int(sys.argv[2]))


def serve(fd: int, *, warmed: bool = False) -> None:
    """Serve one session on the socket ``fd``: configure, then run each execute until the
    host hangs up. ``warmed``: the first-run costs were taken before (by a template)."""
    connection = Connection(fd)
    config = connection.receive()
    if config.get("kind") != "configure":
        raise SystemExit("securepy worker: expected a configure message first")
    connection.max_frame_bytes = config.get("max_frame_bytes") or protocol.MAX_FRAME_BYTES
    _apply_limits(config["limits"], nproc=config["nproc"])
    sys.path[:] = [p for p in config["path"] if isinstance(p, str)]
    _install_interactive_builtins()
    broker = ToolBroker(connection)
    namespace = _build_namespace(config["tools"], broker)
    for module in config.get("preload") or ():
        try:
            __import__(module)  # before "ready": a pool's spare sessions start with it loaded
        except BaseException as exc:  # reported to the host, then the worker exits
            connection.send({"kind": "error", "type": type(exc).__name__, "traceback": "",
                             "message": f"preload of {module!r} failed: {exc}"[:2000]})
            raise SystemExit(1) from None
    state = _TurnState()
    _signal.signal(_signal.SIGINT, state.on_interrupt)
    outputs = _capture_output(connection)
    broker.own_threads = threading.active_count()
    runner = Runner(namespace)
    if not warmed:
        runner.warm_up()
    connection.send({"kind": "ready", "version": protocol.PROTOCOL_VERSION, "pid": os.getpid()})
    while True:
        # Through the broker: a thread the code left running may be waiting on a tool reply,
        # and only one thread may read the socket at a time.
        message = broker.next_execute()
        _run_turn(message, runner, state, broker, outputs, connection)


def _install_interactive_builtins() -> None:
    """help(), exit() and quit(), which ``site`` would add but ``-S`` skips."""
    import _sitebuiltins
    import builtins

    builtins.help = _sitebuiltins._Helper()
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")


class FrameTooLarge(ValueError):
    """A message would exceed the host's frame cap (the host would stop the child)."""


class Connection:
    """The worker's end of the socket: buffered frame reads, locked frame writes."""

    def __init__(self, fd: int) -> None:
        self._sock = _socket.socket(fileno=fd)
        self._buffer = bytearray()
        self._send_lock = threading.Lock()
        self.max_frame_bytes = protocol.MAX_FRAME_BYTES
        self._spin_backoff = 0  # receives to make without spinning after a spin in vain
        self._spin_skips = 0

    def send(self, message: dict[str, Any]) -> None:
        """Send one message whole.

        Raises:
            FrameTooLarge: the encoded message is over the host's cap (nothing is sent).
        """
        frame = protocol.encode_frame(message)
        if len(frame) - protocol.HEADER.size > self.max_frame_bytes:
            raise FrameTooLarge(
                f"the message is {len(frame)} bytes, over the host's {self.max_frame_bytes}-byte"
                " frame limit (max_frame_bytes)")
        with self._send_lock:
            self._sock.sendall(frame)

    def receive(self) -> dict[str, Any]:
        """The next message from the host. A frame is taken off the buffer only once it is
        whole, so an interrupt while waiting never leaves the stream out of step."""
        header_size = protocol.HEADER.size
        while True:
            if len(self._buffer) >= header_size:
                (length,) = protocol.HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= header_size + length:
                    body = bytes(self._buffer[header_size:header_size + length])
                    del self._buffer[:header_size + length]
                    return _parse(body)
                wanted = header_size + length - len(self._buffer)
            else:
                wanted = header_size
            chunk = self._recv(max(65536, wanted))
            if not chunk:
                os._exit(0)  # the host hung up: nothing left to serve
            if not self._buffer and len(chunk) >= header_size and (
                    protocol.HEADER.unpack_from(chunk)[0] == len(chunk) - header_size):
                # The usual case: exactly one whole frame, parsed without the buffer.
                return _parse(chunk[header_size:])
            self._buffer += chunk

    def _recv(self, size: int) -> bytes:
        """Poll briefly before blocking: the host's answer usually comes within tens of
        microseconds, and waking a process that went to sleep costs as much again (on virtual
        machines, several times that). A spin that finds nothing (an idle session, or CPUs too
        busy to answer in time) makes the next receives skip spinning, longer each time."""
        if self._spin_skips:
            self._spin_skips -= 1
        else:
            chunk = self._spin(size)
            if chunk is not None:
                self._spin_backoff //= 2
                return chunk
            self._spin_backoff = min(self._spin_backoff * 2 or 1, _SPIN_BACKOFF_MAX)
            self._spin_skips = self._spin_backoff
        return self._sock.recv(size)

    def _spin(self, size: int) -> bytes | None:
        give_up = time.monotonic() + _SPIN_SECONDS
        while True:
            try:
                return self._sock.recv(size, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                if time.monotonic() > give_up:
                    return None
                os.sched_yield()  # a runnable process on this CPU goes first


_SPIN_SECONDS = 100e-6
_SPIN_BACKOFF_MAX = 64


def _parse(body: bytes) -> dict[str, Any]:
    try:
        return protocol.parse_body(body, protocol.HOST_MESSAGES)
    except protocol.FrameError:
        os._exit(70)  # the host never sends a bad frame: the stream is broken


_EXECUTE = -1  # where the broker files an execute message for the main loop


class ToolBroker:
    """Sends tool calls and routes each reply to its caller.

    Several threads may call tools at once. Whichever waiting caller finds no reader reads the
    next frame and hands it to its owner (leader/followers), so no extra thread is needed.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        # A plain lock (not the RLock a bare Condition makes): taken three times per call.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._replies: dict[int, dict[str, Any]] = {}
        self._reading = False
        self._waiting = 0  # threads in _cond.wait(): with none, no notify is needed
        self._next_id = 0
        self._in_flight = 0
        # Threads the worker itself runs; more means the code runs threads of its own.
        self.own_threads = 1

    def reset(self) -> None:
        """Forget replies to calls abandoned by an earlier turn."""
        if not self._replies:
            return
        with self._lock:
            execute = self._replies.pop(_EXECUTE, None)
            self._replies.clear()
            if execute is not None:
                self._replies[_EXECUTE] = execute

    def call(self, name: str, args: dict[str, Any]) -> Any:
        with self._lock:
            self._next_id += 1
            call_id = self._next_id
            # "solo": nothing else can come from this process until the reply (no other call
            # in flight, no thread of the code's own), so the host may serve it inline.
            solo = self._in_flight == 0 and threading.active_count() <= self.own_threads
            self._in_flight += 1
        try:
            tree = {key: codec.encode(value) for key, value in args.items()}
            self._connection.send({"kind": "tool_call", "call_id": call_id, "name": name,
                                   "args": tree, "solo": solo})
            return _unpack_reply(name, self._wait_for(call_id))
        finally:
            with self._lock:
                self._in_flight -= 1

    def next_execute(self) -> dict[str, Any]:
        """The next ``execute`` message (the main loop's read, in turn with tool callers)."""
        return self._wait_for(_EXECUTE)

    def _wait_for(self, key: int) -> dict[str, Any]:
        replies = self._replies
        while True:
            with self._lock:
                while key not in replies and self._reading:
                    self._waiting += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._waiting -= 1
                if key in replies:
                    return replies.pop(key)
                self._reading = True
            message: dict[str, Any] | None = None
            try:
                message = self._connection.receive()
            finally:
                with self._lock:
                    self._reading = False
                    if self._waiting:
                        self._cond.notify_all()
                    if message is not None:
                        filed_under = _key_of(message)
                        if filed_under != key:
                            # Another caller's reply (or the next execute): file it for them.
                            if filed_under is not None:
                                replies[filed_under] = message
                            message = None
            if message is not None:
                return message


def _key_of(message: dict[str, Any]) -> int | None:
    """Where a message is filed: its call id, _EXECUTE, or nowhere (None)."""
    kind = message["kind"]
    if kind == "tool_result":
        return message["call_id"]  # type: ignore[no-any-return]
    if kind == "execute":
        return _EXECUTE
    return None


def _unpack_reply(name: str, reply: dict[str, Any]) -> Any:
    if reply["ok"]:
        return codec.decode(reply.get("value"))
    error = reply.get("error") or {}
    message = str(error.get("message", "the tool failed"))
    if error.get("kind") == "policy":
        raise PolicyError(message, tool=name)
    raise ToolError(message, tool=name, type_name=str(error.get("type", "")))


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
    outputs: _Outputs,
    connection: Connection,
) -> None:
    broker.reset()
    try:
        state.in_user_code = True
        try:
            value = runner.run(message["code"], message["filename"])
        finally:
            state.in_user_code = False
        outputs.flush()
        try:
            tree = codec.encode(value)
        except codec.CodecError:
            tree = codec._opaque(value)
        try:
            connection.send({"kind": "result", "value": tree})
        except FrameTooLarge as exc:
            connection.send({"kind": "error", "type": "ValueTooLarge", "traceback": "",
                             "message": f"the value could not be returned: {exc}",
                             "limit": "output"})
    except BaseException as exc:  # every failure of the code goes to the host
        state.in_user_code = False
        outputs.flush()
        connection.send(_error_message(exc))


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


def _apply_limits(limits: dict[str, Any], *, nproc: bool) -> None:
    wanted = {
        resource.RLIMIT_AS: limits.get("memory_bytes"),
        resource.RLIMIT_CPU: limits.get("cpu_seconds"),
        resource.RLIMIT_FSIZE: limits.get("file_size_bytes"),
        resource.RLIMIT_NOFILE: limits.get("open_files"),
    }
    if nproc:
        wanted[resource.RLIMIT_NPROC] = limits.get("processes")
    for which, value in wanted.items():
        if value is None:
            continue
        value = int(-(-value // 1))  # ceil, for fractional cpu seconds
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        # For CPU time, soft = hard would end in SIGKILL; one second of headroom lets SIGXCPU
        # arrive first, so the host can name the limit from the exit status.
        ceiling = value + 1 if which == resource.RLIMIT_CPU else value
        if hard != resource.RLIM_INFINITY:
            ceiling = min(ceiling, hard)
        resource.setrlimit(which, (value, ceiling))


def _build_namespace(specs: list[dict[str, Any]], broker: ToolBroker) -> dict[str, Any]:
    tools_module = types.ModuleType("securepy_tools", "The host tools available in this session.")
    tools_module.ToolError = ToolError  # type: ignore[attr-defined]
    tools_module.PolicyError = PolicyError  # type: ignore[attr-defined]
    main_module = types.ModuleType("__main__")
    namespace = main_module.__dict__
    namespace["ToolError"] = ToolError
    namespace["PolicyError"] = PolicyError
    names = []
    for spec in specs:
        stub = make_tool_function(spec, broker)
        setattr(tools_module, stub.__name__, stub)
        namespace[stub.__name__] = stub
        names.append(stub.__name__)
    tools_module.__all__ = [*names, "ToolError", "PolicyError"]  # type: ignore[attr-defined]
    sys.modules["securepy_tools"] = tools_module
    sys.modules["__main__"] = main_module
    return namespace


_JSON_TYPES: dict[str, Any] = {
    "string": str, "integer": int, "number": float, "boolean": bool,
    "array": list, "object": dict, "null": type(None),
}


class _Missing:
    """Default of an optional argument the schema gives no default for: not sent at all."""

    def __repr__(self) -> str:
        return "None"


_MISSING = _Missing()


def make_tool_function(spec: dict[str, Any], broker: ToolBroker) -> Any:
    """A real function for one host tool: its name, a signature from its JSON Schema (required
    parameters first), the description as docstring, and an awaitable twin as ``.aio``.

    The function is compiled from a ``def`` so that its signature is native (``help()``,
    ``inspect.signature`` and argument errors behave as for any function) and so that the
    worker need not import ``inspect`` at start.
    """
    name = spec["name"]
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"invalid tool name {name!r}")
    params, defaults, annotations, var_keyword = _parameters_from_schema(
        spec.get("parameters") or {})
    arg_list = [f"{p}=_defaults[{p!r}]" if p in defaults else p for p in params]
    if var_keyword:
        arg_list.append("**kwargs")
    collected = ", ".join(f"{p!r}: {p}" for p in params)
    extra = ", **kwargs" if var_keyword else ""
    source = (
        f"def {name}({', '.join(arg_list)}):\n"
        f"    return _call({name!r}, {{k: v for k, v in {{{collected}{extra}}}.items()"
        " if v is not _missing})\n"
    )
    scope: dict[str, Any] = {"_defaults": defaults, "_call": broker.call, "_missing": _MISSING}
    exec(compile(source, f"<securepy tool {name}>", "exec"), scope)
    function = scope[name]
    function.__doc__ = spec.get("description") or None
    function.__module__ = "securepy_tools"
    function.__annotations__ = annotations

    async def call_tool_async(*args: Any, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(function, *args, **kwargs)

    call_tool_async.__name__ = call_tool_async.__qualname__ = name
    call_tool_async.__doc__ = function.__doc__
    function.aio = call_tool_async
    return function


def _parameters_from_schema(
    schema: dict[str, Any],
) -> tuple[list[str], dict[str, Any], dict[str, Any], bool]:
    properties = schema.get("properties") or {}
    if not isinstance(properties, dict):
        properties = {}
    required = [n for n in schema.get("required") or [] if n in properties]
    ordered = required + [n for n in properties if n not in required]
    var_keyword = schema.get("additionalProperties") not in (None, False)
    params: list[str] = []
    defaults: dict[str, Any] = {}
    annotations: dict[str, Any] = {}
    for param in ordered:
        if not isinstance(param, str) or not param.isidentifier() or keyword.iskeyword(param) \
                or param.startswith("_") or param == "kwargs":
            var_keyword = True
            continue
        prop = properties[param] if isinstance(properties[param], dict) else {}
        params.append(param)
        if param not in required:
            defaults[param] = prop.get("default", _MISSING)
        annotation = _annotation(prop)
        if annotation is not None:
            annotations[param] = annotation
    return params, defaults, annotations, var_keyword


def _annotation(prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    if isinstance(kind, str) and kind in _JSON_TYPES:
        return _JSON_TYPES[kind]
    options = prop.get("anyOf") or prop.get("oneOf")
    if isinstance(options, list):
        found = [_JSON_TYPES.get(str(o.get("type"))) for o in options if isinstance(o, dict)]
        if found and all(found):
            union: Any = found[0]
            for item in found[1:]:
                union = union | item
            return union
    return None


class _Outputs:
    """stdout/stderr of the code, as streamed ``output`` frames."""

    def __init__(self, connection: Connection, pipes: dict[str, int]) -> None:
        self._connection = connection
        self._pipes = pipes
        self._lock = threading.Lock()
        self.streams: list[_OutputStream] = []
        self._ready = select.poll()
        for fd in pipes.values():
            self._ready.register(fd, select.POLLIN)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()
        if self._ready.poll(0):  # one syscall when, as usual, nothing was written to fds 1, 2
            self.drain_pipes()

    def drain_pipes(self) -> None:
        with self._lock:
            for name, fd in self._pipes.items():
                while True:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if not data:
                        break
                    self.send(name, data.decode("utf-8", "replace"))

    def send(self, stream: str, text: str) -> None:
        # Frames well under any cap: a single huge print must not end the session.
        for start in range(0, len(text), _OUTPUT_CHUNK):
            self._connection.send({"kind": "output", "stream": stream,
                                   "text": text[start:start + _OUTPUT_CHUNK]})

    def forward_forever(self) -> None:
        fds = list(self._pipes.values())
        while True:
            select.select(fds, [], [])
            self.drain_pipes()


_OUTPUT_CHUNK = 64 * 1024  # characters: at most 256 KiB of UTF-8 per frame


class _OutputStream(io.TextIOBase):
    """A text stream that sends what is written, a line at a time."""

    def __init__(self, outputs: _Outputs, name: str, fd: int) -> None:
        self._outputs = outputs
        self._name = name
        self._fd = fd
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            if "\n" not in text and self._size < 8192:
                return len(text)
            data, self._parts, self._size = "".join(self._parts), [], 0
        self._outputs.send(self._name, data)
        return len(text)

    def flush(self) -> None:
        if not self._parts:  # as usual at the end of a turn: no lock needed to see that
            return
        with self._lock:
            if not self._parts:
                return
            data, self._parts, self._size = "".join(self._parts), [], 0
        self._outputs.send(self._name, data)


def _capture_output(connection: Connection) -> _Outputs:
    """Point fds 1 and 2 at pipes forwarded by a thread (for subprocesses and C code), and
    sys.stdout/sys.stderr at line-buffered frame writers (for Python code)."""
    pipes = {}
    for name, fd in (("stdout", 1), ("stderr", 2)):
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.dup2(write_end, fd)
        os.close(write_end)
        pipes[name] = read_end
    outputs = _Outputs(connection, pipes)
    stdout, stderr = _OutputStream(outputs, "stdout", 1), _OutputStream(outputs, "stderr", 2)
    outputs.streams = [stdout, stderr]
    sys.stdout = sys.__stdout__ = stdout  # type: ignore[misc, assignment]
    sys.stderr = sys.__stderr__ = stderr  # type: ignore[misc, assignment]
    # The low-level start: threading.Thread.start() waits until the thread runs, which costs
    # a context switch at every session start, and the forwarder has nothing to do yet.
    _thread.start_new_thread(outputs.forward_forever, ())
    return outputs
