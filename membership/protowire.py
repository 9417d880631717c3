"""The protobuf wire format, by hand: just enough to read and write Talos' small messages.

Spec: https://protobuf.dev/programming-guides/encoding/. Decoding is strict about shape
(truncation, overlong varints, bad tags raise RecordError) but tolerant of content it does not
know: every field of a valid wire type is yielded, so callers can skip fields that newer Talos
versions add.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum

from membership.errors import RecordError


class WireType(IntEnum):
    """The six wire types of the protobuf encoding (3 and 4 are the deprecated groups)."""

    VARINT = 0
    I64 = 1
    LEN = 2
    SGROUP = 3
    EGROUP = 4
    I32 = 5


FieldValue = int | bytes

_MAX_FIELD_NUMBER = (1 << 29) - 1
_MAX_VARINT_LEN = 10
_UINT64_LIMIT = 1 << 64


def encode_varint(value: int) -> bytes:
    """Base-128 varint of 0 <= value < 2**64; raises ValueError outside that range."""
    if not 0 <= value < _UINT64_LIMIT:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Read a varint at `offset`; return (value, next offset); RecordError if truncated/overlong."""
    value = 0
    shift = 0
    for i in range(_MAX_VARINT_LEN):
        pos = offset + i
        if pos >= len(data):
            raise RecordError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >= _UINT64_LIMIT:
                raise RecordError("varint overflows 64 bits")
            return value, pos + 1
        shift += 7
    raise RecordError("varint longer than 10 bytes")


def encode_tag(field_number: int, wire_type: WireType) -> bytes:
    """The key of a field: varint of (field_number << 3 | wire_type); ValueError on bad number."""
    if not 1 <= field_number <= _MAX_FIELD_NUMBER:
        raise ValueError(f"field number out of range: {field_number}")
    return encode_varint(field_number << 3 | wire_type)


def encode_varint_field(field_number: int, value: int) -> bytes:
    """A complete VARINT field (tag and value), written even when value is 0."""
    return encode_tag(field_number, WireType.VARINT) + encode_varint(value)


def encode_len_field(field_number: int, payload: bytes) -> bytes:
    """A complete length-delimited field (bytes, string or sub-message), even when empty."""
    return encode_tag(field_number, WireType.LEN) + encode_varint(len(payload)) + payload


def _read_tag(data: bytes, offset: int) -> tuple[int, WireType, int]:
    key, offset = decode_varint(data, offset)
    field_number = key >> 3
    if not 1 <= field_number <= _MAX_FIELD_NUMBER:
        raise RecordError(f"invalid field number {field_number}")
    try:
        wire_type = WireType(key & 0x7)
    except ValueError:
        raise RecordError(f"invalid wire type {key & 0x7}") from None
    return field_number, wire_type, offset


def _take(data: bytes, offset: int, size: int) -> tuple[bytes, int]:
    end = offset + size
    if end > len(data):
        raise RecordError("truncated field")
    return data[offset:end], end


def _skip_group(data: bytes, offset: int, field_number: int) -> tuple[bytes, int]:
    # Groups nest; iterate with an explicit stack so hostile input cannot exhaust recursion.
    start = offset
    open_groups = [field_number]
    while True:
        if offset >= len(data):
            raise RecordError("unterminated group")
        tag_start = offset
        number, wire_type, offset = _read_tag(data, offset)
        if wire_type is WireType.EGROUP:
            if number != open_groups.pop():
                raise RecordError("mismatched end of group")
            if not open_groups:
                return data[start:tag_start], offset
        elif wire_type is WireType.SGROUP:
            open_groups.append(number)
        else:
            _, offset = _read_value(data, offset, number, wire_type)


def _read_value(
    data: bytes, offset: int, field_number: int, wire_type: WireType
) -> tuple[FieldValue, int]:
    if wire_type is WireType.VARINT:
        return decode_varint(data, offset)
    if wire_type is WireType.I64:
        raw, offset = _take(data, offset, 8)
        return int.from_bytes(raw, "little"), offset
    if wire_type is WireType.I32:
        raw, offset = _take(data, offset, 4)
        return int.from_bytes(raw, "little"), offset
    if wire_type is WireType.LEN:
        size, offset = decode_varint(data, offset)
        return _take(data, offset, size)
    if wire_type is WireType.SGROUP:
        return _skip_group(data, offset, field_number)
    raise RecordError("end of group without a start")


def iter_fields(data: bytes) -> Iterator[tuple[int, WireType, FieldValue]]:
    """Yield (number, wire type, int, or bytes for LEN/group body); RecordError if malformed."""
    offset = 0
    while offset < len(data):
        field_number, wire_type, offset = _read_tag(data, offset)
        value, offset = _read_value(data, offset, field_number, wire_type)
        yield field_number, wire_type, value
