"""The ``securepy`` command: run code in the sandbox, check the host, verify an audit log.

    securepy run FILE | -c CODE | < stdin   [--timeout S] [--memory 512M] [--no-sandbox]
    securepy doctor [--json]
    securepy audit verify FILE

(``python -m securepy`` is the same command.)

What the sandbox sent (its output, its value, its error text) reaches the operator's terminal
only through :func:`_terminal_text`: control characters (C0 except newline and tab, DEL, C1,
ESC) and bidirectional-text controls are shown escaped (``\x1b``), never acted on, and a value
whose repr fails (an int past Python's digit limit, a lone surrogate, a broken ``__repr__``) is
still printed.

Exit status: 0 success; 1 the code raised, hit a limit or could not run, a doctor check
failed, or an audit chain is broken; 2 usage error or unreadable input; 124 the code timed out
(as coreutils ``timeout``); 130 interrupted with Ctrl-C. Errors are one line on stderr, never a
Python traceback (except the sandboxed code's own traceback, which is its output).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


class _Fail(Exception):
    """Stop with one line on stderr and this exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``securepy`` command line.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status (see the module docstring).
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command_function", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status: int = args.command_function(args)
    except _Fail as exc:
        _say_error(str(exc))
        return exc.status
    except KeyboardInterrupt:
        _say_error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`securepy doctor --json | head`): no traceback, and no second
        # error when the interpreter flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return status


def _say_error(message: str) -> None:
    print(f"securepy: error: {_terminal_text(message)}", file=sys.stderr)


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="securepy",
        description="Run LLM-written Python in a sandbox that can call host tools.",
        epilog="Exit status: 0 ok, 1 failure, 2 usage, 124 timeout. "
        "Run 'securepy COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"securepy {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_run_command(commands)
    _add_doctor_command(commands)
    _add_audit_command(commands)
    return parser


# -- securepy run ----------------------------------------------------------------------------


def _add_run_command(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run Python code in a sandboxed session",
        description="Run Python code in a fresh sandboxed session: print its output, then the "
        "value of its last expression (if not None). Network is always off inside "
        "the sandbox. Code comes from FILE, from -c, or from stdin.",
        epilog="Exit status: 0 ok; 1 the code raised, hit a limit or could not run; "
        "2 usage or unreadable FILE; 124 timeout.",
    )
    source = run.add_mutually_exclusive_group()
    source.add_argument(
        "file", nargs="?", metavar="FILE", help="a Python file to run ('-' or nothing: read stdin)"
    )
    source.add_argument("-c", dest="code", metavar="CODE", help="the code to run, as a string")
    run.add_argument(
        "--timeout",
        type=_parse_timeout,
        default=30.0,
        metavar="SECONDS",
        help="wall-clock seconds before the code is stopped (default: 30)",
    )
    run.add_argument(
        "--memory",
        type=_parse_size,
        default=None,
        metavar="SIZE",
        help="memory limit, e.g. 512M or 2G (binary units; default: 512M)",
    )
    run.add_argument(
        "--no-network",
        action="store_true",
        help="no network inside the sandbox: always the case, accepted for explicitness",
    )
    run.add_argument(
        "--no-sandbox",
        action="store_true",
        help="UNSAFE: run the code as a plain child process, without the OS "
        "sandbox (resource limits still apply)",
    )
    run.add_argument(
        "--audit-log",
        metavar="PATH",
        default=None,
        help="append the session's audit events to this JSON-lines file",
    )
    run.add_argument(
        "--sanitize-errors",
        action="store_true",
        help="strip host paths, user names, pids and addresses from errors",
    )
    run.add_argument("--verbose", action="store_true", help="log the session's activity to stderr")
    run.set_defaults(command_function=_run)


def _run(args: argparse.Namespace) -> int:
    import securepy

    code = _read_code(args)
    limits = securepy.Limits()
    if args.memory is not None:
        limits = dataclasses.replace(limits, memory_bytes=args.memory)
    try:
        with securepy.Session(
            sandbox=not args.no_sandbox,
            limits=limits,
            timeout=args.timeout,
            audit_log=args.audit_log,
            sanitize_errors=args.sanitize_errors,
            verbose=args.verbose,
        ) as session:
            execution = session.execute(code, on_output=_echo_output)
    except securepy.ExecutionError as exc:
        sys.stdout.flush()
        sys.stderr.write(_terminal_text(exc.traceback or f"{exc}\n"))
        return EXIT_FAILED
    except securepy.ExecutionTimeout as exc:
        _say_error(str(exc))
        return EXIT_TIMEOUT
    except securepy.SandboxUnavailableError as exc:
        raise _Fail(
            f"{_first_line(str(exc))} (run 'securepy doctor' for what to fix, or pass "
            "--no-sandbox to run unsandboxed)"
        ) from None
    except (securepy.SecurePyError, ValueError, TypeError) as exc:
        raise _Fail(_first_line(str(exc))) from None
    if execution.value is not None:
        print(_terminal_text(_printable_repr(execution.value)))
    return EXIT_OK


def _read_code(args: argparse.Namespace) -> str:
    if args.code is not None:
        return str(args.code)
    if args.file is None or args.file == "-":
        return sys.stdin.read()
    try:
        with open(args.file, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise _Fail(f"cannot read {args.file!r}: {reason}", EXIT_USAGE) from None


def _echo_output(stream: str, text: str) -> None:
    target = sys.stdout if stream == "stdout" else sys.stderr
    target.write(_terminal_text(text))
    target.flush()


def _escape_table() -> dict[int, str]:
    controls = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
    table = {code: f"\\x{code:02x}" for code in controls if code not in (0x09, 0x0A)}
    # Bidirectional overrides and isolates, line/paragraph separators: they reorder or break
    # what the operator reads ("Trojan Source").
    for code in (
        0x061C,
        0x200E,
        0x200F,
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ):
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPES = _escape_table()


def _terminal_text(text: str) -> str:
    """``text`` safe to write to a terminal: control characters escaped, lone surrogates as
    ``\\udcxx`` (a UTF-8 terminal cannot encode them)."""
    text = text.translate(_ESCAPES)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _printable_repr(value: Any) -> str:
    """``repr(value)``, or, when that fails, a rendering that cannot: ints past Python's
    int-to-str digit limit in hex, containers walked, anything else by its type."""
    try:
        return repr(value)
    except Exception:
        return _fallback_repr(value, 0)


_BRACKETS: dict[type, str] = {list: "[]", tuple: "()", set: "{}", frozenset: "{}"}


def _fallback_repr(value: Any, depth: int) -> str:
    if type(value) is int:
        try:
            return repr(value)
        except ValueError:  # over sys.get_int_max_str_digits(): hex is linear and exact
            return f"{hex(value)} (an int of {value.bit_length()} bits, shown in hex)"
    if depth > 100:
        return "..."
    brackets = _BRACKETS.get(type(value))
    if brackets is not None:
        items = ", ".join(_fallback_repr(item, depth + 1) for item in value)
        return f"{brackets[0]}{items}{brackets[1]}"
    if type(value) is dict:
        pairs = (
            f"{_fallback_repr(k, depth + 1)}: {_fallback_repr(v, depth + 1)}"
            for k, v in value.items()
        )
        return "{" + ", ".join(pairs) + "}"
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__qualname__} object (repr failed: {type(exc).__name__})>"


def _parse_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be a positive number")
    return value


def _parse_size(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size; write bytes or a number with K, M, G or T, e.g. 512M"
        )
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the size must be positive")
    return size


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "unknown error"


# -- securepy doctor -------------------------------------------------------------------------


def _add_doctor_command(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check that sandboxed sessions can start on this host",
        description="Probe what the sandbox needs on this host (bubblewrap, user namespaces, "
        "/proc, seccomp, cgroups, rlimits) and print each check as ok or the fix.",
        epilog="Exit status: 0 sandboxed sessions can start here; 1 they cannot.",
    )
    doctor.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (the verdict, the wall, the host, each check) for machines",
    )
    doctor.set_defaults(command_function=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    try:
        from . import _doctor as doctor
    except ImportError:
        raise _Fail(
            "this securepy has no host checks yet (securepy._doctor is missing); "
            "upgrade securepy-core"
        ) from None
    checks = doctor.run_checks()
    if args.json:
        print(json.dumps(doctor.report(checks), indent=2))
        return EXIT_OK if doctor.can_sandbox(checks) else EXIT_FAILED
    for check in checks:
        # FAIL only for what stops sandboxed sessions; an optional layer is a note.
        mark = "ok  " if check.ok else "FAIL" if check.required else "note"
        line = f"{mark} {check.name}"
        if check.detail:
            line += f": {check.detail}"
        print(line)
        if not check.ok and check.fix:
            print(f"     fix: {check.fix}")
    if doctor.can_sandbox(checks):
        print("sandboxed sessions can start on this host")
        return EXIT_OK
    print("sandboxed sessions cannot start on this host; apply the fixes above")
    return EXIT_FAILED


# -- securepy audit --------------------------------------------------------------------------


def _add_audit_command(commands: Any) -> None:
    audit = commands.add_parser(
        "audit",
        help="work with audit logs",
        description="Work with securepy audit logs (JSON lines, hash-chained).",
    )
    actions = audit.add_subparsers(title="actions", metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check an audit log's hash chain",
        description="Check every line of an audit log against its own hash and the line "
        "before it; report the first broken line, or that the chain holds.",
        epilog="Exit status: 0 the chain holds; 1 it is broken; 2 the file cannot be read.",
    )
    verify.add_argument("file", metavar="FILE", help="the audit log to check")
    verify.set_defaults(command_function=_verify)
    audit.set_defaults(command_function=lambda args: _usage(audit))


def _usage(parser: argparse.ArgumentParser) -> NoReturn:
    parser.print_help(sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _verify(args: argparse.Namespace) -> int:
    from ._audit import verify_audit_log

    try:
        result = verify_audit_log(args.file)
    except OSError as exc:
        raise _Fail(f"cannot read {args.file!r}: {exc.strerror}", EXIT_USAGE) from None
    if result.ok:
        print(f"{args.file}: ok, the chain holds over {result.lines} lines (head {result.head})")
        return EXIT_OK
    print(_terminal_text(f"{args.file}: broken at line {result.broken_line}: {result.reason}"))
    for gap in result.gaps[1:]:
        print(_terminal_text(f"{args.file}: also {gap}"))
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
