"""Decoding Talos records that are garbage, corrupted, truncated, or carry unknown fields."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from membership.errors import RecordError
from membership.record import AffiliateRecord, KubeSpanInfo
from membership.talos_codec import decode_affiliate, decode_endpoint
from tests.membership.talos_codec_support import (
    ENDPOINT_V4,
    ENDPOINT_V4_BYTES,
    FULL_RECORD,
    FULL_RECORD_BYTES,
)
from tests.membership.wire import WireType, encode_len_field, encode_tag, encode_varint_field


@given(st.binary(max_size=300))
def test_decoding_garbage_raises_only_record_error(data: bytes) -> None:
    for decode in (decode_affiliate, decode_endpoint):
        with contextlib.suppress(RecordError):
            decode(data)


@given(st.integers(0, len(FULL_RECORD_BYTES) - 1), st.integers(0, 255), st.binary(max_size=3))
def test_corrupting_a_valid_record_raises_only_record_error(
    position: int, byte: int, inserted: bytes
) -> None:
    # Random bytes rarely get past the first tag; corrupting real bytes reaches the field checks.
    corrupted = bytearray(FULL_RECORD_BYTES)
    corrupted[position] = byte
    corrupted[position:position] = inserted
    with contextlib.suppress(RecordError):
        decode_affiliate(bytes(corrupted))


def test_truncation_fails_unless_it_falls_between_top_level_fields() -> None:
    # Every top-level field of the vector is one tag byte, one length byte (< 128), payload.
    boundaries = {0}
    offset = 0
    while offset < len(FULL_RECORD_BYTES):
        assert FULL_RECORD_BYTES[offset] & 0x7 == WireType.LEN
        assert FULL_RECORD_BYTES[offset + 1] < 0x80
        offset += 2 + FULL_RECORD_BYTES[offset + 1]
        boundaries.add(offset)
    assert max(boundaries) == len(FULL_RECORD_BYTES)
    for size in range(len(FULL_RECORD_BYTES)):
        if size in boundaries:
            decode_affiliate(FULL_RECORD_BYTES[:size])
        else:
            with pytest.raises(RecordError):
                decode_affiliate(FULL_RECORD_BYTES[:size])


# --- tolerance: unknown fields, repeated fields ---------------------------------------------

_UNKNOWN_FIELDS = (
    encode_varint_field(99, 12345)
    + encode_tag(100, WireType.I64)
    + bytes(8)
    + encode_len_field(101, b"from the future")
    + encode_tag(102, WireType.I32)
    + bytes(4)
    # A group holding a varint and a nested group.
    + encode_tag(103, WireType.SGROUP)
    + encode_varint_field(1, 7)
    + encode_tag(2, WireType.SGROUP)
    + encode_len_field(3, b"x")
    + encode_tag(2, WireType.EGROUP)
    + encode_tag(103, WireType.EGROUP)
    # The largest field number protobuf allows.
    + encode_varint_field(2**29 - 1, 0)
)


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    assert decode_affiliate(_UNKNOWN_FIELDS + FULL_RECORD_BYTES + _UNKNOWN_FIELDS) == FULL_RECORD
    assert decode_endpoint(ENDPOINT_V4_BYTES + _UNKNOWN_FIELDS) == ENDPOINT_V4
    # Unknown fields inside sub-messages too.
    kubespan = encode_len_field(1, b"key") + _UNKNOWN_FIELDS
    prefix = encode_len_field(1, bytes(4)) + encode_varint_field(2, 8) + _UNKNOWN_FIELDS
    control_plane = encode_varint_field(1, 6443) + _UNKNOWN_FIELDS
    data = encode_len_field(7, kubespan + encode_len_field(3, prefix)) + encode_len_field(
        8, control_plane
    )
    assert decode_affiliate(data) == AffiliateRecord(
        node_id="",
        kubespan=KubeSpanInfo(public_key="key", additional_addresses=(IPv4Network("0.0.0.0/8"),)),
        api_server_port=6443,
    )


def test_a_field_talos_does_not_know_is_ignored() -> None:
    # What a future record of ours adds (numbered from 1000 up as affiliate.proto asks; 1000
    # itself is mesh health, see test_health.py): this version decodes the rest and drops it.
    mesh_health = encode_len_field(1001, encode_varint_field(1, 3) + encode_len_field(2, b"ok"))
    assert decode_affiliate(FULL_RECORD_BYTES + mesh_health) == FULL_RECORD
    assert decode_affiliate(mesh_health + FULL_RECORD_BYTES) == FULL_RECORD


def test_repeated_submessages_merge_and_scalars_last_one_wins() -> None:
    data = (
        encode_len_field(1, b"first")
        + encode_len_field(
            7, encode_len_field(1, b"k1") + encode_len_field(3, b"\x0a\x04\x0a\0\0\0\x10\x20")
        )
        + encode_len_field(1, b"second")
        + encode_len_field(7, encode_len_field(3, b"\x0a\x04\x0b\0\0\0\x10\x08"))
        + encode_len_field(8, b"")
    )
    assert decode_affiliate(data) == AffiliateRecord(
        node_id="second",
        kubespan=KubeSpanInfo(
            public_key="k1",
            additional_addresses=(IPv4Network("10.0.0.0/32"), IPv4Network("11.0.0.0/8")),
        ),
        api_server_port=0,
    )


def test_host_bits_of_prefixes_are_masked() -> None:
    # Talos' own tests send 10.244.3.1/24.
    prefix = encode_len_field(1, bytes([10, 244, 3, 1])) + encode_varint_field(2, 24)
    record = decode_affiliate(encode_len_field(7, encode_len_field(3, prefix)))
    assert record.kubespan is not None
    assert record.kubespan.additional_addresses == (IPv4Network("10.244.3.0/24"),)


def test_empty_kubespan_address_means_none() -> None:
    data = encode_len_field(7, encode_len_field(2, b"\x01" * 16) + encode_len_field(2, b""))
    assert decode_affiliate(data).kubespan == KubeSpanInfo(public_key="", address=None)
