"""Raw protobuf wire bytes for the codec tests: what the generated classes cannot write.

Wrong wire types, groups, unknown fields and malformed fields are exactly the input a decoder
must survive, and no well-behaved encoder produces them. Spec:
https://protobuf.dev/programming-guides/encoding/.
"""

from __future__ import annotations

from enum import IntEnum


class WireType(IntEnum):
    """The six wire types of the protobuf encoding (3 and 4 are the deprecated groups)."""

    VARINT = 0
    I64 = 1
    LEN = 2
    SGROUP = 3
    EGROUP = 4
    I32 = 5


def encode_varint(value: int) -> bytes:
    """Base-128 varint of a non-negative value, least significant group first."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_tag(field_number: int, wire_type: WireType) -> bytes:
    """The key of a field: varint of (field_number << 3 | wire_type)."""
    return encode_varint(field_number << 3 | wire_type)


def encode_varint_field(field_number: int, value: int) -> bytes:
    """A complete VARINT field (tag and value), written even when value is 0."""
    return encode_tag(field_number, WireType.VARINT) + encode_varint(value)


def encode_len_field(field_number: int, payload: bytes) -> bytes:
    """A complete length-delimited field (bytes, string or sub-message), even when empty."""
    return encode_tag(field_number, WireType.LEN) + encode_varint(len(payload)) + payload
