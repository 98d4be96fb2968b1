"""Child text the host passes on is well-formed Unicode: a lone surrogate the code prints,
raises or displays (JSON can carry one) becomes U+FFFD, so no strict UTF-8 encoder after the
host (an LLM client, a log file, a database) fails on it. Control: other non-ASCII text,
emoji included, comes through unchanged, and values stay the code's own."""

from __future__ import annotations

import pytest
import securepy
from securepy import errors
from securepy._child_text import well_formed
from securepy.adapters import SandboxRunner

pytestmark = pytest.mark.sandbox

CONTROL = "héllo wörld 😀 日本"


def test_printed_surrogates_are_replaced_and_the_rest_kept() -> None:
    with securepy.Session() as session:
        result = session.execute(
            f"import sys\nprint({CONTROL!r})\nprint('a\\ud800b')\n"
            "print('\\udfff', file=sys.stderr)\n'v\\ud800'")
        assert result.stdout == f"{CONTROL}\na\ufffdb\n"
        assert result.stderr == "\ufffd\n"
        assert result.value == "v\ud800"  # a value is the code's data, left as it is
        result.text.encode("utf-8")  # what a model is shown encodes (repr escapes the value)
        result.stdout.encode("utf-8")


def test_an_error_s_text_is_well_formed() -> None:
    with securepy.Session() as session, pytest.raises(errors.ExecutionError) as raised:
        session.execute(f"raise ValueError('bad \\ud800 ' + {CONTROL!r})")
    error = raised.value
    assert f"bad \ufffd {CONTROL}" in str(error)
    str(error).encode("utf-8")
    error.traceback.encode("utf-8")


def test_what_an_adapter_hands_the_model_encodes() -> None:
    runner = SandboxRunner(tools=[])
    try:
        for code in ("print('\\ud800')", "raise ValueError('\\udc80')",
                     "display({'text/plain': 'x\\ud800'}, raw=True)"):
            outcome = runner.run(code)
            outcome.text.encode("utf-8")
            assert "\ufffd" in outcome.text, (code, outcome.text)
    finally:
        runner.close()


def test_the_replacement_itself() -> None:
    assert well_formed(CONTROL) is CONTROL  # control: nothing to replace, nothing copied
    assert well_formed("ascii") == "ascii"
    assert well_formed("\ud83d\ude00") == "\ufffd\ufffd"  # a pair in a str is two lone halves
    assert well_formed("a\udcff\ud800z") == "a\ufffd\ufffdz"
