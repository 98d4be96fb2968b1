"""Framing and message validation, without any process."""

from __future__ import annotations

import json

import pytest
from securepy._channel import _FrameBuffer
from securepy._worker import protocol
from securepy.errors import ProtocolError


def frame(body: bytes) -> bytes:
    return protocol.HEADER.pack(len(body)) + body


def test_encode_frame_round_trips_through_the_buffer() -> None:
    buffer = _FrameBuffer(1024)
    buffer.data += protocol.encode_frame({"kind": "output", "stream": "stdout", "text": "hi"})
    assert buffer.next_message() == {"kind": "output", "stream": "stdout", "text": "hi"}
    assert buffer.next_message() is None


def test_partial_frames_wait_for_the_rest() -> None:
    data = protocol.encode_frame({"kind": "result", "value": 1})
    buffer = _FrameBuffer(1024)
    buffer.data += data[:3]
    assert buffer.next_message() is None
    buffer.data += data[3:-1]
    assert buffer.next_message() is None
    buffer.data += data[-1:]
    assert buffer.next_message() == {"kind": "result", "value": 1}


def test_oversized_length_is_refused_before_the_body_arrives() -> None:
    buffer = _FrameBuffer(100)
    buffer.data += protocol.HEADER.pack(101)
    with pytest.raises(ProtocolError, match=r"frame of 101 bytes, over the 100-byte cap"):
        buffer.next_message()


MALFORMED = {
    "not-json": b"{nope",
    "not-utf8": b"\xff\xfe",
    "array": b"[1, 2]",
    "unknown-kind": b'{"kind": "pwn"}',
    "kind-not-str": b'{"kind": 5}',
    "missing-key": b'{"kind": "output", "stream": "stdout"}',
    "extra-key": b'{"kind": "result", "value": 1, "exec": "x"}',
    "wrong-type": b'{"kind": "tool_call", "call_id": "1", "name": "x", "args": {}}',
    "bool-as-int": b'{"kind": "tool_call", "call_id": true, "name": "x", "args": {}}',
    "too-deep": ('{"kind": "result", "value": ' + "[" * 300 + "]" * 300 + "}").encode(),
    "very-deep": ("[" * 100000 + "]" * 100000).encode(),
    "host-message-from-child": b'{"kind": "execute", "code": "1", "filename": "x"}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames_raise_protocol_error(body: bytes) -> None:
    buffer = _FrameBuffer(10_000_000)
    buffer.data += frame(body)
    with pytest.raises(ProtocolError, match=r"^the child sent an invalid frame: "):
        buffer.next_message()


def test_check_depth_is_iterative_and_exact() -> None:
    tree: list[object] = []
    node = tree
    for _ in range(9):
        child: list[object] = []
        node.append(child)
        node = child
    protocol.check_depth(tree, 10)
    with pytest.raises(protocol.FrameError, match="deeper than 9 levels"):
        protocol.check_depth(tree, 9)


def test_every_child_message_kind_has_a_schema() -> None:
    assert set(protocol.CHILD_MESSAGES) == {"ready", "output", "tool_call", "result", "error"}
    assert set(protocol.HOST_MESSAGES) == {"configure", "execute", "tool_result"}


def test_frames_are_compact_utf8_json() -> None:
    data = protocol.encode_frame({"kind": "output", "stream": "stdout", "text": "é"})
    (length,) = protocol.HEADER.unpack(data[:4])
    assert json.loads(data[4:].decode()) == {"kind": "output", "stream": "stdout", "text": "é"}
    assert length == len(data) - 4
