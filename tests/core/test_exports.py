"""The public face: exactly the contract's names, each presented as securepy's."""

from __future__ import annotations

import securepy
from securepy import errors

CONTRACT = {
    "execute_python", "tool", "Tool", "Session", "AsyncSession", "SessionPool",
    "AsyncSessionPool", "Execution", "Limits", "Mount", "Output", "validate_code", "errors",
    "__version__",
}
ERRORS = {
    "SecurePyError", "ExecutionError", "ExecutionTimeout", "CodeValidationError", "ToolError",
    "SandboxUnavailableError", "SessionClosedError", "ResourceLimitError", "ProtocolError",
    "PolicyError", "SessionBusyError", "PoolTimeout",
}


def test_all_is_exactly_the_contract() -> None:
    assert set(securepy.__all__) == CONTRACT | ERRORS
    assert set(errors.__all__) == ERRORS


def test_public_objects_present_as_securepy() -> None:
    for name in CONTRACT - {"errors", "__version__"}:
        assert getattr(securepy, name).__module__ == "securepy", name


def test_errors_keep_their_module_and_are_the_same_classes() -> None:
    for name in ERRORS:
        cls = getattr(securepy, name)
        assert cls is getattr(errors, name)
        assert cls.__module__ == "securepy.errors"
        assert issubclass(cls, errors.SecurePyError)


def test_busy_and_pool_timeout_are_distinct_but_still_caught_as_closed() -> None:
    for name in ("SessionBusyError", "PoolTimeout"):
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SessionClosedError)  # older except clauses still work
        assert not issubclass(errors.SessionClosedError, cls)
    assert not issubclass(errors.SessionBusyError, errors.PoolTimeout)
    assert not issubclass(errors.PoolTimeout, errors.SessionBusyError)


def test_timeout_is_also_a_timeout_error() -> None:
    assert issubclass(errors.ExecutionTimeout, TimeoutError)


def test_worker_exception_names_match_the_host() -> None:
    from securepy._worker import stubs as main

    assert main.ToolError.__name__ == errors.ToolError.__name__
    assert main.PolicyError.__name__ == errors.PolicyError.__name__


def test_worker_imports_only_the_standard_library() -> None:
    import ast
    import sys
    from pathlib import Path

    worker = Path(securepy.__file__).parent / "_worker"
    for path in worker.glob("*.py"):
        if path.name == "inline_backend.py":
            # matplotlib's backend for the sandbox: only matplotlib imports it, when the code
            # uses pyplot (test_worker_modules: a fresh child loads nothing outside stdlib).
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in sys.stdlib_module_names, (path.name, name)


def test_error_attributes_are_plain_data() -> None:
    error = errors.ExecutionError("ValueError", "boom", traceback="tb", stdout="o", stderr="e")
    assert (str(error), error.remote_type, error.message) == ("ValueError: boom", "ValueError",
                                                              "boom")
    kept = errors.ExecutionTimeout(2, state_kept=True)
    assert (kept.interrupted, kept.killed) == (True, False)
    assert str(kept) == ("execution timed out after 2 s: the code was interrupted; the session "
                         "kept its state")
    syntax = errors.CodeValidationError("invalid syntax", lineno=3, offset=7)
    assert (syntax.line, syntax.column, str(syntax)) == (3, 7, "invalid syntax (line 3, column 7)")
