"""Advisory checks of code before it runs: syntax, plus findings that never block."""

from __future__ import annotations

import ast
import dataclasses
import functools
import typing

from .errors import CodeValidationError

__all__ = ["Finding", "check_syntax", "validate_code"]

_RISKY_MODULES = {
    "ctypes": "loads native code",
    "socket": "opens sockets (the sandbox has no network)",
    "subprocess": "starts processes",
    "multiprocessing": "starts processes",
    "urllib": "tries the network (the sandbox has no network)",
    "http": "tries the network (the sandbox has no network)",
    "requests": "tries the network (the sandbox has no network)",
}
_RISKY_CALLS = {
    "eval": "evaluates a string as code",
    "exec": "executes a string as code",
    "__import__": "imports dynamically",
    "compile": "compiles a string as code",
}


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """Something in the code worth a look. Advisory: it never blocks execution.

    Attributes:
        line: 1-based line.
        message: what was found and why it may matter.
    """

    line: int
    message: str


def validate_code(code: str) -> list[Finding]:
    """Check that ``code`` parses, and list advisory findings (never blocking).

    Returns:
        Findings such as imports of ``subprocess`` or calls to ``eval``; empty if none.

    Raises:
        securepy.errors.CodeValidationError: the code does not parse (with line and column).

    Example:
        >>> import securepy
        >>> [f.message for f in securepy.validate_code("import socket")]
        ["imports 'socket', which opens sockets (the sandbox has no network)"]
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, not {type(code).__name__}")
    try:
        tree = ast.parse(code, "<code>", "exec", type_comments=False,
                         feature_version=None)
    except SyntaxError as exc:
        try:
            tree = compile(code, "<code>", "exec", flags=ast.PyCF_ONLY_AST
                           | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        except SyntaxError:
            raise CodeValidationError(exc.msg or "invalid syntax", lineno=exc.lineno or 0,
                                      offset=exc.offset or 0) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise CodeValidationError(f"the code cannot be parsed: {exc}") from None
    findings: list[Finding] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        for module in _imported_modules(node):
            top = module.split(".")[0]
            if top in _RISKY_MODULES:
                findings.append(Finding(line, f"imports {top!r}, which "
                                        f"{_RISKY_MODULES[top]}"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
                node.func.id in _RISKY_CALLS):
            findings.append(Finding(line, f"calls {node.func.id}(), which "
                                    f"{_RISKY_CALLS[node.func.id]}"))
        if isinstance(node, ast.While) and isinstance(node.test, ast.Constant) and (
                node.test.value is True) and not any(isinstance(n, ast.Break)
                                                      for n in ast.walk(node)):
            findings.append(Finding(line, "an endless loop with no break: the "
                                    "execution will run until its timeout"))
    return sorted(findings, key=lambda f: f.line)


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


# Agents resend the same snippets; parsing them again on the host costs more than running them.
# Only code that compiled is remembered (an exception is never cached).
@functools.lru_cache(maxsize=64)
def check_syntax(code: str) -> None:
    """Raise CodeValidationError if ``code`` does not parse (top-level await allowed)."""
    try:
        # To bytecode, not just an AST: some SyntaxErrors ("'return' outside function")
        # come from the compiler.
        compile(code, "<code>", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        raise CodeValidationError(
            exc.msg or "invalid syntax", lineno=exc.lineno or 0, offset=exc.offset or 0
        ) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise CodeValidationError(f"the code cannot be parsed: {exc}") from None
