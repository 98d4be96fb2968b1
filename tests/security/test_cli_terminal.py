"""``securepy run`` is safe on a terminal: what the sandbox prints, returns or raises reaches
the operator with control characters escaped, and any value prints without a host traceback.

Attack: code that prints or returns escape sequences (retitle the terminal, hide text, move
the cursor), bidirectional overrides, lone surrogates, ints past Python's digit limit, or
objects whose repr fails. Control: ordinary text, newlines and tabs print as they are.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(code: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securepy._cli", "run", *extra, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        encoding="utf-8",
        errors="strict",
    )


CONTROL_BYTES = "".join(
    chr(c) for c in [*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)]
)


def assert_terminal_safe(text: str) -> None:
    assert not any(ch in text for ch in CONTROL_BYTES), repr(text)
    assert "\u202e" not in text and "\u2066" not in text
    text.encode("utf-8")  # no lone surrogate left


ATTACKS = {
    "stdout-escapes": "print('\\x1b]0;pwned\\x07\\x1b[2J\\x1b[8mhidden\\r\\x9b31m')",
    "stderr-escapes": "import sys; sys.stderr.write('\\x1b[31mred\\x1b[0m\\n')",
    "value-escapes": "'\\x1b[1;1H\\x1b[2Jvalue'",
    "bidi": "print('admin\\u202e\\u2066txt.exe')",
    "lone-surrogate-value": "'\\udcff\\ud800'",
    "lone-surrogate-print": "print('\\udcff')",
    "error-escapes": "raise ValueError('\\x1b[2J\\x1b]0;pwned\\x07')",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_sandbox_text_reaches_the_terminal_escaped(attack: str) -> None:
    result = run(ATTACKS[attack], "--no-sandbox")
    assert "Traceback (most recent call last)" not in result.stderr or attack == "error-escapes"
    assert 'File "/' not in result.stderr  # never a host traceback
    assert_terminal_safe(result.stdout)
    assert_terminal_safe(result.stderr)
    if attack == "lone-surrogate-print":  # the host made the output well-formed first
        assert "\ufffd" in result.stdout
        return
    assert (
        "\\x1b" in result.stdout + result.stderr
        or "\\u" in result.stdout + result.stderr
        or "\\udc" in result.stdout + result.stderr
    )


def test_control_plain_text_newlines_and_tabs_print_as_they_are() -> None:
    result = run("print('a\\tb\\nc é 😀')\n'done'", "--no-sandbox")
    assert (result.returncode, result.stdout) == (0, "a\tb\nc é 😀\n'done'\n")


VALUES = {
    "huge-int": ("10**5000 + 1", "an int of 16610 bits, shown in hex"),
    "huge-int-in-list": ("[2**20000, 'ok']", "'ok']"),
    "broken-repr": (
        "class X:\n    def __repr__(self):\n        raise RuntimeError('no')\nX()",
        "X object",
    ),
    "repr-with-escapes": (
        "class X:\n    def __repr__(self):\n        return '\\x1b[2J'\nX()",
        "\\x1b[2J",
    ),
}


@pytest.mark.parametrize("name", list(VALUES))
def test_any_value_prints_without_a_host_traceback(name: str) -> None:
    code, expected = VALUES[name]
    result = run(code, "--no-sandbox")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stdout
    assert_terminal_safe(result.stdout)


@pytest.mark.sandbox
def test_a_sandboxed_run_escapes_the_same_way() -> None:
    result = run("print('\\x1b]0;pwned\\x07')\n10**5000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("\\x1b]0;pwned\\x07\n0x")
    assert_terminal_safe(result.stdout)
