"""Limits: validation, defaults, and limits applied without the sandbox too."""

from __future__ import annotations

import dataclasses

import pytest
import securepy
from securepy import errors


def test_defaults_are_safe_not_unlimited() -> None:
    limits = securepy.Limits()
    assert limits.cpu_seconds == 60
    assert limits.memory_bytes == 512 * 1024 * 1024
    assert limits.file_size_bytes == 50 * 1024 * 1024
    assert limits.processes == 64
    assert limits.open_files == 256


@pytest.mark.parametrize(("field", "value", "error", "message"), [
    ("memory_bytes", 0, ValueError, r"^Limits.memory_bytes must be positive, got 0; pass None"),
    ("cpu_seconds", -1, ValueError, r"^Limits.cpu_seconds must be positive"),
    ("processes", 1.5, TypeError, r"^Limits.processes must be a whole number"),
    ("open_files", "many", TypeError, r"^Limits.open_files must be a number or None"),
    ("memory_bytes", True, TypeError, r"^Limits.memory_bytes must be a number or None"),
], ids=["zero", "negative", "fraction", "string", "bool"])
def test_bad_values_are_refused(field: str, value: object, error: type[Exception],
                                message: str) -> None:
    with pytest.raises(error, match=message):
        securepy.Limits(**{field: value})  # type: ignore[arg-type]


def test_unknown_names_are_refused() -> None:
    with pytest.raises(TypeError, match="memory"):
        securepy.Limits(memory=1)  # type: ignore[call-arg]


def test_none_turns_one_limit_off_and_replace_makes_variants() -> None:
    limits = dataclasses.replace(securepy.Limits(), memory_bytes=None)
    assert limits.memory_bytes is None and limits.cpu_seconds == 60
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.cpu_seconds = 1  # type: ignore[misc]


def test_rlimits_apply_without_the_sandbox() -> None:
    limits = securepy.Limits(file_size_bytes=4096, open_files=64)
    with securepy.Session(sandbox=False, limits=limits) as session:
        soft_hard = session.execute(
            "import resource\n[resource.getrlimit(r) for r in "
            "(resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE)]").value
        assert soft_hard == [(4096, 4096), (64, 64)]
        with pytest.raises(errors.ResourceLimitError) as info:
            session.execute("open('big.bin', 'wb').write(b'x' * 10000)")
        assert info.value.limit == "file_size"
        assert info.value.state_kept is True
        assert session.execute("1 + 1").value == 2


def test_memory_limit_raises_resource_limit_error_and_session_recovers() -> None:
    limits = securepy.Limits(memory_bytes=256 * 1024 * 1024)
    with securepy.Session(sandbox=False, limits=limits) as session:
        session.execute("kept = 1")
        with pytest.raises(errors.ResourceLimitError) as info:
            session.execute("x = bytearray(1024 * 1024 * 1024)")
        assert info.value.limit == "memory"
        assert session.execute("kept").value == 1


def test_cpu_limit_stops_the_child_and_names_the_limit() -> None:
    with securepy.Session(sandbox=False, limits=securepy.Limits(cpu_seconds=1)) as session:
        with pytest.raises(errors.ResourceLimitError) as info:
            session.execute("while True: pass", timeout=20)
        assert info.value.limit == "cpu_seconds"
        assert info.value.state_kept is False
        assert session.execute("2").value == 2
