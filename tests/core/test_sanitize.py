"""sanitize_errors=True: no host path, user name, pid or address reaches the model."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import securepy
from securepy._sanitize import sanitize_text

USER_NAMES = {name for name in (getpass.getuser(), pwd.getpwuid(os.getuid()).pw_name,
                                os.environ.get("USER"), os.environ.get("LOGNAME")) if name}
HOME = os.path.expanduser("~")


def host_details(tmp_path: Path) -> list[str]:
    """The real host values that must not appear, as regexes."""
    paths = {str(tmp_path), HOME, os.getcwd(), sys.prefix, os.path.dirname(securepy.__file__)}
    found = [re.escape(p) for p in paths if len(p) > 1]
    found += [rf"(?i)(?<![\w]){re.escape(name)}(?![\w])" for name in USER_NAMES]
    found.append(rf"(?<!\d){os.getpid()}(?!\d)")
    found.append(r"0x[0-9a-f]{6,}")
    found.append(r'File "/')
    return found


def assert_clean(text: str, tmp_path: Path) -> None:
    for pattern in host_details(tmp_path):
        assert not re.search(pattern, text), f"{pattern!r} found in {text!r}"


LEAKY_CODE = """
import os
raise RuntimeError(
    f"cannot read {{os.path.expanduser('~')}}/.ssh/id_rsa or {path}/data.csv as "
    f"{{os.environ.get('HOST_USER')}}; host pid {{os.getppid()}}, pid {{os.getpid()}}, "
    f"object at {{hex(id(object()))}}")
"""


@pytest.fixture
def leaky_code(tmp_path: Path) -> str:
    return LEAKY_CODE.format(path=tmp_path)


def run_leaky(code: str, *, sanitize: bool) -> securepy.ExecutionError:
    with securepy.Session(sandbox=False, sanitize_errors=sanitize) as session, pytest.raises(
            securepy.ExecutionError) as info:
        session.execute(f"import os\nos.environ['HOST_USER'] = {sorted(USER_NAMES)[0]!r}\n"
                        + code)
    return info.value


def test_control_without_sanitizing_the_error_names_host_details(
        leaky_code: str, tmp_path: Path) -> None:
    error = run_leaky(leaky_code, sanitize=False)
    assert str(tmp_path) in str(error)
    assert str(os.getpid()) in str(error)


def test_execution_error_message_and_traceback_are_sanitized(
        leaky_code: str, tmp_path: Path) -> None:
    error = run_leaky(leaky_code, sanitize=True)
    for text in (str(error), error.message, error.traceback):
        assert_clean(text, tmp_path)
    assert error.message == (
        "cannot read <path>/id_rsa or <path>/data.csv as <user>; host pid <pid>, pid <pid>, "
        "object at <address>")
    assert error.type_name == "RuntimeError"


def test_host_library_frames_are_hidden(tmp_path: Path) -> None:
    with securepy.Session(sandbox=False, sanitize_errors=True) as session, pytest.raises(
            securepy.ExecutionError) as info:
        session.execute("import json\njson.loads('{')")
    traceback = info.value.traceback
    assert_clean(traceback, tmp_path)
    assert 'File "<cell-' in traceback
    assert "[host frames hidden]" in traceback
    assert traceback.rstrip().endswith("(char 1)")


def leaky_tool(name: str) -> securepy.Tool:
    def fail() -> None:
        raise OSError(f"cannot open {HOME}/secrets.db for {sorted(USER_NAMES)[0]} "
                      f"(pid {os.getpid()}) via {Path(__file__).resolve()} at {object()!r}")

    return securepy.Tool(name, "Fails with host details.", fail)


def test_tool_errors_sent_into_the_sandbox_are_sanitized(tmp_path: Path) -> None:
    with securepy.Session([leaky_tool("fetch")], sandbox=False,
                          sanitize_errors=True) as session:
        execution = session.execute(
            "try:\n    fetch()\nexcept ToolError as e:\n    seen = str(e)\nseen")
        assert_clean(execution.value, tmp_path)
        assert execution.value == (
            "fetch() failed: OSError: cannot open <path>/secrets.db for <user> (pid <pid>) via "
            "<path>/test_sanitize.py at <object object at <address>>")
        assert execution.tool_calls[0].error is not None
        assert_clean(execution.tool_calls[0].error, tmp_path)
        with pytest.raises(securepy.ExecutionError) as info:
            session.execute("fetch()")
    assert_clean(str(info.value), tmp_path)
    assert_clean(info.value.traceback, tmp_path)


def test_control_tool_errors_are_unchanged_without_sanitizing() -> None:
    with securepy.Session([leaky_tool("fetch")], sandbox=False) as session:
        execution = session.execute(
            "try:\n    fetch()\nexcept ToolError as e:\n    seen = str(e)\nseen")
    assert HOME in execution.value and str(os.getpid()) in execution.value


def test_policy_denial_reasons_are_sanitized(tmp_path: Path) -> None:
    def deny(call: Any) -> str:
        return f"{tmp_path}/policy.yaml forbids this for {sorted(USER_NAMES)[0]}"

    tool = securepy.Tool("drop", "Denied.", lambda: None, approve=deny)
    with securepy.Session([tool], sandbox=False, sanitize_errors=True) as session:
        execution = session.execute(
            "try:\n    drop()\nexcept PolicyError as e:\n    seen = str(e)\nseen")
    assert execution.value == "<path>/policy.yaml forbids this for <user>"


@pytest.mark.sandbox
def test_a_sandboxed_session_sanitizes_tool_errors(tmp_path: Path) -> None:
    with securepy.Session([leaky_tool("fetch")], sanitize_errors=True) as session, \
            pytest.raises(securepy.ExecutionError) as info:
        session.execute("fetch()")
    assert_clean(str(info.value), tmp_path)
    assert_clean(info.value.traceback, tmp_path)


# -- sanitize_text itself -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("No such file: '/srv/app/data.csv'", "No such file: '<path>/data.csv'"),
    ("No such file: '/srv/my app/data v2.csv'", "No such file: '<path>/data v2.csv'"),
    ("in /etc", "in <path>/etc"),
    (f"open {HOME}", "open <path>"),
    ("worker pid=4242 died, PID: 17", "worker pid=<pid> died, PID: <pid>"),
    ("<Foo object at 0x7f3a1b2c3d4e>", "<Foo object at <address>>"),
    ("flags 0x1f", "flags 0x1f"),
    ("see https://example.com/a/b.html", "see https://example.com/a/b.html"),
    ("relative ./data/x.csv and 10/2", "relative ./data/x.csv and 10/2"),
    ("", ""),
], ids=["quoted-path", "path-with-spaces", "one-component", "home", "pids", "address",
        "small-hex", "url", "relative-and-division", "empty"])
def test_sanitize_text(text: str, expected: str) -> None:
    assert sanitize_text(text) == expected


def test_the_host_pid_and_user_names_are_replaced_anywhere() -> None:
    for name in USER_NAMES:
        assert sanitize_text(f"owner {name}, {name.upper()}'s files") == (
            "owner <user>, <user>'s files")
    assert sanitize_text(f"started by {os.getpid()}") == "started by <pid>"


def test_host_frames_collapse_to_one_line() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "<cell-1>", line 1, in <module>\n'
        "    load()\n"
        '  File "/usr/lib/python3/json/__init__.py", line 346, in loads\n'
        "    return _default_decoder.decode(s)\n"
        "           ^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        '  File "/usr/lib/python3/json/decoder.py", line 337, in decode\n'
        "    obj, end = self.raw_decode(s, idx=_w(s, 0))\n"
        "ValueError: bad\n"
    )
    assert sanitize_text(text) == (
        "Traceback (most recent call last):\n"
        '  File "<cell-1>", line 1, in <module>\n'
        "    load()\n"
        "  [host frames hidden]\n"
        "ValueError: bad\n"
    )


@pytest.mark.parametrize("text", [
    f"{HOME}/x.py pid 12 at 0xdeadbeef00 for {sorted(USER_NAMES)[0]}",
    '  File "/a/b.py", line 1, in f\n    f()\nKeyError: 1\n',
    json.dumps({"path": "/var/lib/x", "pid": os.getpid()}),
], ids=["mixed", "frame", "json"])
def test_sanitizing_twice_changes_nothing_more(text: str) -> None:
    once = sanitize_text(text)
    assert sanitize_text(once) == once
