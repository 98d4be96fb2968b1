"""The securepy command, each subcommand run as a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import securepy
from securepy._audit import verify_audit_log

SCRIPT = Path(sys.executable).with_name("securepy")


def securepy_cli(
    *args: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securepy._cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"securepy: error: {message}"


def test_the_console_script_is_installed() -> None:
    result = subprocess.run(
        [str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout.split()[0]) == (0, "securepy")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["doctor", "--help"],
        ["audit", "--help"],
        ["audit", "verify", "--help"],
    ],
    ids=["top", "run", "doctor", "audit", "verify"],
)
def test_help_everywhere(args: list[str]) -> None:
    result = securepy_cli(*args)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: securepy")
    assert result.stderr == ""


@pytest.mark.parametrize("args", [[], ["audit"]], ids=["no-command", "no-action"])
def test_a_missing_command_prints_usage(args: list[str]) -> None:
    result = securepy_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: securepy")


# -- run (unsandboxed, explicitly) ----------------------------------------------------------


def test_run_code_prints_output_then_value() -> None:
    result = securepy_cli("run", "--no-sandbox", "-c", "print('hello')\n6 * 7")
    assert (result.returncode, result.stdout) == (0, "hello\n42\n")


def test_run_file(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import sys\nprint('to err', file=sys.stderr)\n'done'\n")
    result = securepy_cli("run", "--no-sandbox", str(script))
    assert (result.returncode, result.stdout) == (0, "'done'\n")
    assert "to err\n" in result.stderr


@pytest.mark.parametrize("args", [[], ["-"]], ids=["implicit", "dash"])
def test_run_reads_stdin(args: list[str]) -> None:
    result = securepy_cli("run", "--no-sandbox", *args, stdin="x = 2\nx ** 10\n")
    assert (result.returncode, result.stdout) == (0, "1024\n")


def test_an_exception_prints_the_code_traceback_and_exits_1() -> None:
    result = securepy_cli("run", "--no-sandbox", "-c", "print('before')\n1/0")
    assert result.returncode == 1
    assert result.stdout == "before\n"
    assert 'File "<cell-1>", line 2' in result.stderr
    assert result.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


def test_a_timeout_exits_124() -> None:
    result = securepy_cli("run", "--no-sandbox", "--timeout", "0.3", "-c", "while True: pass")
    assert result.returncode == 124
    assert_one_line_error(
        result,
        "execution timed out after 0.3 s: the code was interrupted; the session kept its state",
    )


def test_memory_sets_the_limit() -> None:
    result = securepy_cli(
        "run", "--no-sandbox", "--memory", "256M", "-c", "x = bytearray(512 * 1024 * 1024)"
    )
    assert result.returncode == 1
    assert "the code hit the memory limit" in result.stderr
    assert "Traceback" not in result.stderr
    ok = securepy_cli(
        "run", "--no-sandbox", "--memory", "1G", "-c", "len(bytearray(512 * 1024 * 1024))"
    )
    assert (ok.returncode, ok.stdout) == (0, f"{512 * 1024 * 1024}\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--memory", "lots"],
            "argument --memory: 'lots' is not a size; write bytes or a number "
            "with K, M, G or T, e.g. 512M",
        ),
        (["--timeout", "-1"], "argument --timeout: '-1': the timeout must be a positive number"),
        (["-c", "1", "file.py"], "argument FILE: not allowed with argument -c"),
    ],
    ids=["memory", "timeout", "two-sources"],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    result = securepy_cli("run", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"securepy run: error: {message}"


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = securepy_cli("run", str(tmp_path / "nope.py"))
    assert result.returncode == 2
    assert_one_line_error(
        result, f"cannot read {str(tmp_path / 'nope.py')!r}: No such file or directory"
    )


def test_a_syntax_error_is_one_line() -> None:
    result = securepy_cli("run", "--no-sandbox", "-c", "x = (")
    assert result.returncode == 1
    assert_one_line_error(result, "'(' was never closed (line 1, column 5)")


def test_a_bad_audit_log_is_one_line(tmp_path: Path) -> None:
    result = securepy_cli("run", "--no-sandbox", "--audit-log", str(tmp_path), "-c", "1")
    assert result.returncode == 1
    assert_one_line_error(
        result,
        f"the audit log {str(tmp_path)!r} is a directory; audit_log= must name a "
        "regular file (or a new one to create) in a directory you control, not a "
        "symlink, a directory or a device",
    )


def test_run_writes_an_audit_log_that_verifies(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    result = securepy_cli("run", "--no-sandbox", "--audit-log", str(log), "-c", "1 + 1")
    assert (result.returncode, result.stdout) == (0, "2\n")
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["session_start", "execute_start", "execute_complete", "session_close"]
    assert verify_audit_log(log).ok


@pytest.mark.sandbox
def test_run_is_sandboxed_by_default(tmp_path: Path) -> None:
    host_file = tmp_path / "host-only.txt"
    host_file.write_text("secret")
    code = f"import os\nos.path.exists({str(host_file)!r})"
    control = securepy_cli("run", "--no-sandbox", "-c", code)
    assert control.stdout == "True\n"
    result = securepy_cli("run", "-c", code)
    assert (result.returncode, result.stdout) == (0, "False\n")
    network = securepy_cli(
        "run", "--no-network", "-c", "import socket\nsocket.create_connection(('1.1.1.1', 53), 2)"
    )
    assert network.returncode == 1
    assert re.match(r"^\w+Error: ", network.stderr.splitlines()[-1])


# -- doctor ---------------------------------------------------------------------------------


def test_doctor_prints_each_check_and_its_verdict() -> None:
    from securepy import _doctor

    checks = _doctor.run_checks()
    result = securepy_cli("doctor")
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    for check in checks:
        # FAIL only for what stops sessions; a missing optional layer is a note
        mark = "ok   " if check.ok else "FAIL " if check.required else "note "
        assert any(line.startswith(mark + check.name) for line in lines)
        if not check.ok and check.fix:
            assert f"     fix: {check.fix}" in lines
    assert any(line.startswith(("ok   wall", "FAIL wall")) for line in lines)  # names the wall
    if _doctor.can_sandbox(checks):
        assert result.returncode == 0
        assert lines[-1] == "sandboxed sessions can start on this host"
    else:
        assert result.returncode == 1
        assert lines[-1] == ("sandboxed sessions cannot start on this host; apply the fixes above")


def test_doctor_json_is_the_same_verdict_for_machines() -> None:
    text = securepy_cli("doctor")
    result = securepy_cli("doctor", "--json")
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert result.returncode == text.returncode == (0 if report["can_sandbox"] else 1)
    assert set(report) == {"can_sandbox", "wall", "version", "host", "checks"}
    assert report["version"] == securepy.__version__
    assert report["host"]["platform"] == sys.platform
    assert report["host"]["root"] == (os.geteuid() == 0)
    # every line the text output prints is there, with the same status and fix
    marks = {"ok": "ok  ", "fail": "FAIL", "note": "note"}
    lines = text.stdout.splitlines()
    assert len(report["checks"]) == sum(line[:4] in marks.values() for line in lines)
    for check in report["checks"]:
        assert set(check) == {"name", "ok", "required", "status", "detail", "fix"}
        assert check["status"] == ("ok" if check["ok"] else "fail" if check["required"] else "note")
        shown = f"{marks[check['status']]} {check['name']}"
        assert shown + (f": {check['detail']}" if check["detail"] else "") in lines
    wall = next(check for check in report["checks"] if check["name"] == "wall")
    assert wall["ok"] == (report["wall"] is not None)
    if report["wall"] is not None:
        assert f"the {report['wall']} wall" in wall["detail"]


@pytest.mark.sandbox
def test_doctor_json_names_the_wall_sessions_use() -> None:
    report = json.loads(securepy_cli("doctor", "--json").stdout)
    assert report["can_sandbox"] is True
    with securepy.Session() as session:
        assert report["wall"] == session.wall


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    # `securepy doctor --json | head -1`: the pipe is closed before the report is written
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "securepy", "doctor", "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (1, "")


def test_python_dash_m_securepy_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "securepy", "run", "--no-sandbox", "-c", "print(6 * 7)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "42\n")
    usage = subprocess.run(
        [sys.executable, "-m", "securepy"], capture_output=True, text=True, timeout=60, check=False
    )
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: securepy ")


# -- audit verify ---------------------------------------------------------------------------


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    log = tmp_path / "audit.jsonl"
    result = securepy_cli("run", "--no-sandbox", "--audit-log", str(log), "-c", "1")
    assert result.returncode == 0
    return log


def test_verify_a_good_log(audit_log: Path) -> None:
    head = verify_audit_log(audit_log).head
    result = securepy_cli("audit", "verify", str(audit_log))
    assert result.returncode == 0
    assert result.stdout == f"{audit_log}: ok, the chain holds over 4 lines (head {head})\n"


def test_verify_reports_the_first_broken_line(audit_log: Path) -> None:
    lines = audit_log.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"code": "1"', '"code": "2"')
    audit_log.write_text("".join(lines))
    result = securepy_cli("audit", "verify", str(audit_log))
    assert result.returncode == 1
    assert result.stdout == (
        f"{audit_log}: broken at line 2: the line's content does not "
        "match its hash: it was edited\n"
    )


def test_verify_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = securepy_cli("audit", "verify", str(tmp_path / "none.jsonl"))
    assert result.returncode == 2
    assert_one_line_error(
        result, f"cannot read {str(tmp_path / 'none.jsonl')!r}: No such file or directory"
    )
