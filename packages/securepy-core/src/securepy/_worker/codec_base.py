"""What every part of the codec shares: its error, the opaque stand-in, base64 and field
checks. Stdlib only: this runs inside the sandbox."""

from __future__ import annotations

import binascii

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CodecError", "Opaque", "b64decode", "b64encode", "field"]


def b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64decode(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CodecError("malformed base64 data") from None


class CodecError(ValueError):
    """A value cannot be encoded, or a tree is not a valid encoding."""


class Opaque:
    """A value with no faithful encoding: its type name and its repr, as text.

    Attributes:
        type_name: the value's type, as ``module.QualifiedName``.
        text: the value's repr, bounded to 2,000 characters.
    """

    __slots__ = ("text", "type_name")

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name = type_name
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Opaque)
            and other.type_name == self.type_name
            and other.text == self.text
        )

    def __hash__(self) -> int:
        return hash((self.type_name, self.text))


def field(tree: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = tree.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise CodecError(f"malformed {tree.get('$')!r} value: field {name!r}")
    return value
