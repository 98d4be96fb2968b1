"""Framing and message validation, without any process."""

from __future__ import annotations

import json
import socket

import pytest
from securepy._channel import Channel
from securepy._worker import protocol
from securepy.errors import ProtocolError


def frame(body: bytes) -> bytes:
    return protocol.HEADER.pack(len(body)) + body


def reader(cap: int) -> protocol.FrameReader:
    return protocol.FrameReader(protocol.CHILD_MESSAGES, cap)


def receive_on_host(data: bytes, cap: int) -> dict[str, object]:
    """What the host's channel makes of ``data`` sent by a child."""
    host, child = socket.socketpair()
    try:
        child.sendall(data)
        return Channel(host, max_frame_bytes=cap).receive(None)
    finally:
        host.close()
        child.close()


def test_encode_frame_round_trips_through_the_buffer() -> None:
    buffer = reader(1024)
    buffer.data += protocol.encode_frame({"kind": "output", "stream": "stdout", "text": "hi"})
    assert buffer.next_message() == {"kind": "output", "stream": "stdout", "text": "hi"}
    assert buffer.next_message() is None


def test_partial_frames_wait_for_the_rest() -> None:
    data = protocol.encode_frame({"kind": "result", "value": 1})
    buffer = reader(1024)
    buffer.data += data[:3]
    assert buffer.next_message() is None
    buffer.data += data[3:-1]
    assert buffer.next_message() is None
    buffer.data += data[-1:]
    assert buffer.next_message() == {"kind": "result", "value": 1}


def test_oversized_length_is_refused_before_the_body_arrives() -> None:
    buffer = reader(100)
    buffer.data += protocol.HEADER.pack(101)
    with pytest.raises(protocol.FrameTooLarge, match=r"frame of 101 bytes, over the 100-byte cap"):
        buffer.next_message()
    with pytest.raises(ProtocolError, match=r"^the child sent a frame of 101 bytes, over the "):
        receive_on_host(protocol.HEADER.pack(101), 100)


def test_a_whole_frame_skips_the_buffer_and_a_frame_within_the_cap_passes() -> None:
    data = protocol.encode_frame({"kind": "result", "value": 1})
    assert reader(1024).parse_whole(data) == {"kind": "result", "value": 1}
    assert reader(1024).parse_whole(data + data) is None  # more than one: buffered
    assert reader(len(data) - 5).parse_whole(data) is None  # over the cap: the buffer refuses
    assert receive_on_host(data + data, 1024) == {"kind": "result", "value": 1}


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
    buffer = reader(10_000_000)
    buffer.data += frame(body)
    with pytest.raises(protocol.FrameError):
        buffer.next_message()
    with pytest.raises(ProtocolError, match=r"^the child sent an invalid frame: "):
        receive_on_host(frame(body), 10_000_000)


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
    assert set(protocol.CHILD_MESSAGES) == {"ready", "output", "display", "tool_call", "result",
                                            "error", "file_chunk", "file_reply"}
    assert set(protocol.HOST_MESSAGES) == {"configure", "execute", "tool_result", "files"}


def test_frames_are_compact_utf8_json() -> None:
    data = protocol.encode_frame({"kind": "output", "stream": "stdout", "text": "é"})
    (length,) = protocol.HEADER.unpack(data[:4])
    assert json.loads(data[4:].decode()) == {"kind": "output", "stream": "stdout", "text": "é"}
    assert length == len(data) - 4
