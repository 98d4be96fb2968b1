"""Checking an audit log: every line intact (its hash) and chained to the one before
(``prev_hash``), and no session's ``seq`` jumping (records never written)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing

from ._audit_record import GENESIS_HASH, HASH_SUFFIX

__all__ = ["VerifyResult", "verify_audit_log"]


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class VerifyResult:
    """What :func:`verify_audit_log` found.

    Attributes:
        ok: True when every line is intact and chained to the one before.
        lines: lines read (up to and including the broken one when not ok).
        broken_line: 1-based number of the first line that fails, or None.
        reason: why that line fails ("" when ok).
        head: the ``hash`` of the last intact line (64 zeros for an empty file). Keep it
            somewhere else to detect later removal of lines from the end of the file, which a
            chain alone cannot show.
        gaps: one text per jump in a session's ``seq`` (records that were never written,
            e.g. because the disk was full); any gap makes ``ok`` False, and ``broken_line``
            and ``reason`` name the first when the chain itself holds.
    """

    ok: bool
    lines: int
    broken_line: int | None = None
    reason: str = ""
    head: str = GENESIS_HASH
    gaps: tuple[str, ...] = ()


def verify_audit_log(path: str | os.PathLike[str]) -> VerifyResult:
    """Check an audit log's hash chain, line by line.

    Args:
        path: the audit log.

    Returns:
        A :class:`VerifyResult`: ok with the line count, or the first broken line and why.

    Raises:
        OSError: the file cannot be read.
    """
    previous = GENESIS_HASH
    number = 0
    gaps: list[str] = []
    first_gap: int | None = None
    sequences: dict[str, int] = {}
    with open(os.fspath(path), "rb") as file:
        for number, raw in enumerate(file, start=1):
            problem, digest = _check_line(raw, previous)
            if problem:
                return VerifyResult(False, number, number, problem, previous, tuple(gaps))
            previous = digest
            gap = _sequence_gap(raw, sequences, number)
            if gap:
                gaps.append(gap)
                first_gap = first_gap or number
    if gaps:
        return VerifyResult(False, number, first_gap, gaps[0], previous, tuple(gaps))
    return VerifyResult(True, number, None, "", previous)


def _sequence_gap(raw: bytes, sequences: dict[str, int], number: int) -> str:
    """A description of the jump in this line's session ``seq``, or ""."""
    record = json.loads(raw)
    session, seq = record.get("session_id"), record.get("seq")
    if type(session) is not str or type(seq) is not int:
        return ""
    last = sequences.get(session)
    sequences[session] = seq
    if last is None or seq == last + 1:
        return ""
    return (
        f"line {number}: session {session[:64]} jumps from seq {last} to {seq} "
        f"({seq - last - 1} records missing: a write failed or lines were removed)"
    )


def _check_line(raw: bytes, previous: str) -> tuple[str, str]:
    """("", this line's hash), or (what is wrong, "")."""
    if not raw.endswith(b"\n"):
        return "the line is incomplete (no newline): a write was cut short or the file was cut", ""
    try:
        text = raw[:-1].decode("ascii")
    except UnicodeDecodeError:
        return "the line holds non-ASCII bytes, which securepy never writes", ""
    match = HASH_SUFFIX.search(text)
    if match is None:
        return "the line has no hash at its end", ""
    body = text[: match.start()] + "}"
    try:
        record = json.loads(body)
    except ValueError:
        return "the line is not valid JSON", ""
    if not isinstance(record, dict):
        return "the line is not a JSON object", ""
    if hashlib.sha256(body.encode("ascii")).hexdigest() != match.group(1):
        return "the line's content does not match its hash: it was edited", ""
    if record.get("prev_hash") != previous:
        return (
            "the line's prev_hash does not match the line before it: lines were deleted, "
            "inserted or reordered"
        ), ""
    return "", match.group(1)
