"""The files protocol's host side fed hostile replies directly: every shape a forged
``file_reply`` or ``file_chunk`` can take is refused with ProtocolError or mapped to the host's
own error and text, bounded whatever the child sent."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from securepy import errors
from securepy._files_wire import (
    MAX_READ_BYTES,
    ChunkReader,
    FileEntry,
    between_turns,
    check_reply,
    entries_from,
)
from securepy._worker import protocol


def test_chunks_are_collected_while_they_are_valid_and_within_the_bound() -> None:
    reader = ChunkReader(10)
    reader.take(base64.b64encode(b"hello").decode())
    reader.take(base64.b64encode(b"world").decode())
    assert reader.content({"size": 10}) == b"helloworld"  # control
    with pytest.raises(errors.ProtocolError, match="more than the 10-byte read bound"):
        reader.take(base64.b64encode(b"!").decode())


@pytest.mark.parametrize("data", ["not base64!", "aGVsbG8", "aGVs\nbG8=", "=" * 8])
def test_a_chunk_that_is_not_strict_base64_is_refused(data: str) -> None:
    with pytest.raises(errors.ProtocolError, match="not valid base64"):
        ChunkReader(MAX_READ_BYTES).take(data)


@pytest.mark.parametrize("size", [4, 6, None, "5", True])
def test_a_reply_whose_size_is_not_what_was_sent_is_refused(size: Any) -> None:
    reader = ChunkReader(100)
    reader.take(base64.b64encode(b"12345").decode())
    with pytest.raises(errors.ProtocolError, match="does not match the chunks"):
        reader.content({"size": size})


def test_a_listing_is_checked_entry_by_entry() -> None:
    good = [["a.txt", 3, "file"], ["d", 0, "directory"], ["l", 1, "symlink"], ["p", 0, "other"]]
    assert entries_from({"entries": good}) == [FileEntry(*entry) for entry in good]  # control
    long_name = "n" * 5000
    assert entries_from({"entries": [[long_name, 1, "file"]]})[0].name == "n" * 1024


@pytest.mark.parametrize("entries", [
    None, "a.txt", {"a": 1}, [["a", 1]], [["a", 1, "file", "x"]], [[1, 1, "file"]],
    [["a", "1", "file"]], [["a", True, "file"]], [["a", 1.5, "file"]], [["a", 1, "device"]],
    [("a", 1, "file")],
])
def test_a_malformed_listing_is_refused(entries: Any) -> None:
    with pytest.raises(errors.ProtocolError, match="malformed file listing"):
        entries_from({"entries": entries})


def test_a_listing_over_the_entry_cap_is_refused() -> None:
    entries = [["f", 0, "file"]] * (protocol.MAX_FILE_ENTRIES + 1)
    with pytest.raises(errors.ProtocolError, match="malformed file listing"):
        entries_from({"entries": entries})


@pytest.mark.parametrize(("code", "error", "text"), [
    ("not_found", FileNotFoundError, "no such file or directory"),
    ("symlink", errors.PolicyError, "a symbolic link is on the path"),
    ("hard_link", errors.PolicyError, "other hard links"),
    ("special", errors.PolicyError, "not a regular file"),
    ("read_only", PermissionError, "read-only mount"),
    ("too_large", errors.ResourceLimitError, "over the 77-byte read bound"),
    ("no_space", errors.ResourceLimitError, "the workspace is full"),
    ("file_size", errors.ResourceLimitError, "over the file size limit"),
])
def test_an_error_code_becomes_the_host_s_own_error_and_text(
        code: str, error: type[Exception], text: str) -> None:
    check_reply({"ok": True}, "read", "x")  # control: a good reply raises nothing
    with pytest.raises(error, match=text) as raised:
        check_reply({"ok": False, "error": code, "detail": "<child text>"}, "read", "x", 77)
    assert "<child text>" not in str(raised.value)


def test_an_unknown_code_is_an_os_error_with_the_child_s_text_bounded() -> None:
    with pytest.raises(OSError) as raised:
        check_reply({"ok": False, "error": "e" * 10_000, "detail": "d" * 10_000}, "list", "x")
    assert len(str(raised.value)) < 300
    with pytest.raises(OSError, match=r"failed \(\[1, 2\]\)"):
        check_reply({"ok": False, "error": 5, "detail": [1, 2]}, "list", "x")


def test_between_turns_output_is_dropped_tool_calls_refused_and_the_rest_is_an_error() -> None:
    reply = {"kind": "file_reply", "ok": True}
    assert between_turns(reply, None) == (reply, None)
    assert between_turns({"kind": "output", "stream": "stdout", "text": "x"}, None) == (None,
                                                                                        None)
    _, answer = between_turns({"kind": "tool_call", "call_id": 3, "name": "f", "args": {}},
                              None)
    assert answer is not None and answer["call_id"] == 3
    assert "only while an execute runs" in str(answer)
    with pytest.raises(errors.ProtocolError, match="unexpected 'file_chunk'"):
        between_turns({"kind": "file_chunk", "data": ""}, None)  # no read is asking for one
    with pytest.raises(errors.ProtocolError, match="unexpected 'result'"):
        between_turns({"kind": "result", "value": None}, None)
