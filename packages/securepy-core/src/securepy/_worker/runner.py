"""Running one snippet: compile, exec, the trailing expression's value, user-only tracebacks.

Stdlib only: this runs inside the sandbox.
"""

from __future__ import annotations

import _ast
import errno
import os
import sys
from types import CodeType

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = ["Runner", "describe_limit", "format_user_traceback"]

_WORKER_DIR = os.path.dirname(os.path.abspath(__file__))
# The C parser's node classes (_ast) rather than the ast module, which imports enum; and
# linecache (tokenize, re) only once something else has imported it: both cost milliseconds
# at every start.
_FLAGS = _ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_CACHE_SIZE = 64
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect


class Runner:
    """Executes snippets in one persistent namespace, like a REPL.

    A trailing expression statement is evaluated for its value. Top-level ``await`` works; such
    snippets run on one event loop kept for the session.
    """

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self._loop: Any = None  # an asyncio loop, made on the first top-level await
        # Agents often resend the same snippet; compiling costs more than running small code.
        self._compiled: dict[str, tuple[CodeType | None, CodeType | None]] = {}

    def run(self, source: str, filename: str) -> Any:
        """Run ``source``; return the trailing expression's value (None if there is none)."""
        compiled = self._compiled.get(source)
        if compiled is None:
            _remember_source(source, filename)
            compiled = _split_trailing_expression(source, filename)
            if len(self._compiled) >= _CACHE_SIZE:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[source] = compiled
        body, last = compiled
        if _pending_sources:
            _share_sources_with_linecache()
        if body is not None:
            self._run_code(body)
        return self._run_code(last) if last is not None else None

    def warm_up(self) -> None:
        """Take the first-run costs (parser, compiler, codec paths) before the host waits."""
        body, last = _split_trailing_expression("_ = None\n_", "<warm-up>")
        scratch: dict[str, Any] = {}
        if body is not None:
            eval(body, scratch)
        if last is not None:
            eval(last, scratch)

    def _run_code(self, code: CodeType) -> Any:
        result = eval(code, self.namespace)
        if code.co_flags & _CO_COROUTINE:
            # Imported here: asyncio costs tens of milliseconds at start, and most code
            # never awaits at top level.
            import asyncio

            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            result = self._loop.run_until_complete(result)
        return result


def _split_trailing_expression(
    source: str, filename: str
) -> tuple[CodeType | None, CodeType | None]:
    tree = compile(source, filename, "exec", _ast.PyCF_ONLY_AST | _FLAGS, dont_inherit=True)
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = _ast.Expression(tree.body.pop().value)
        body = compile(tree, filename, "exec", flags=_FLAGS) if tree.body else None
        return body, compile(last, filename, "eval", flags=_FLAGS)
    return compile(tree, filename, "exec", flags=_FLAGS), None


_pending_sources: dict[str, str] = {}


def _remember_source(source: str, filename: str) -> None:
    _pending_sources[filename] = source


def _share_sources_with_linecache() -> None:
    """Give linecache the cells' sources (for traceback lines) once it has been imported."""
    linecache = sys.modules.get("linecache")
    if linecache is None or not _pending_sources:
        return
    for filename, source in _pending_sources.items():
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    _pending_sources.clear()


def format_user_traceback(exc: BaseException) -> str:
    """The traceback text of ``exc`` without the worker's own frames."""
    import linecache  # noqa: F401 - loaded for the sources below
    import traceback

    _share_sources_with_linecache()

    summary = traceback.TracebackException.from_exception(exc)
    _drop_worker_frames(summary)
    return "".join(summary.format())


def _drop_worker_frames(summary: Any) -> None:
    import traceback

    seen: set[int] = set()
    pending = [summary]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kept = [f for f in current.stack if not f.filename.startswith(_WORKER_DIR)]
        current.stack = traceback.StackSummary.from_list(kept)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def describe_limit(exc: BaseException) -> str | None:
    """The resource limit an exception points to, if any."""
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        from .rlimits import thread_refused_by

        return thread_refused_by()
    if isinstance(exc, OSError):
        return {
            errno.EFBIG: "file_size",
            errno.EMFILE: "open_files",
            errno.ENFILE: "open_files",
            errno.EAGAIN: "processes",
            errno.ENOSPC: "workspace",
        }.get(exc.errno or 0)
    return None
