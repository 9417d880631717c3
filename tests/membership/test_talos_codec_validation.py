"""Decoding Talos records whose fields are invalid raises RecordError naming the field."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

import pytest

from membership.errors import RecordError
from membership.talos_codec import decode_affiliate, decode_endpoint
from tests.membership.wire import WireType, encode_len_field, encode_tag, encode_varint_field


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encode_len_field(2, bytes(5)), "addresses: IP must be 4 or 16 bytes, got 5"),
        (encode_len_field(2, b""), "addresses: IP must be 4 or 16 bytes, got 0"),
        (encode_varint_field(1, 5), "node_id: wrong wire type VARINT"),
        (
            encode_tag(1, WireType.SGROUP) + encode_tag(1, WireType.EGROUP),
            "node_id: wrong wire type SGROUP",
        ),
        (encode_tag(2, WireType.I64) + bytes(8), "addresses: wrong wire type I64"),
        (encode_tag(5, WireType.I32) + bytes(4), "machine_type: wrong wire type I32"),
        (encode_len_field(3, b"\xff\xfe"), "hostname: invalid UTF-8"),
        (encode_len_field(6, b"\xed\xa0\x80"), "operating_system: invalid UTF-8"),
        (encode_varint_field(7, 1), "kubespan: wrong wire type"),
        (encode_varint_field(8, 1), "control_plane: wrong wire type"),
        (encode_len_field(8, encode_varint_field(1, 65536)), "api_server_port out of range"),
        (encode_len_field(8, encode_len_field(1, b"")), "api_server_port: wrong wire type LEN"),
        (encode_len_field(7, encode_len_field(1, b"\x80")), "public_key: invalid UTF-8"),
        (encode_len_field(7, encode_len_field(2, bytes(4))), "kubespan.address must be 16 bytes"),
        (encode_len_field(7, encode_varint_field(3, 1)), "additional_addresses: wrong wire"),
        (
            encode_len_field(7, encode_len_field(4, encode_varint_field(2, 8))),
            "exclude_advertised_addresses: prefix without an IP",
        ),
        (
            encode_len_field(7, encode_len_field(3, encode_len_field(1, bytes(4)) + b"\x10\x21")),
            "/33 is too long for IPv4",
        ),
        (
            encode_len_field(
                7, encode_len_field(3, encode_len_field(1, bytes(16)) + b"\x10\x81\x01")
            ),
            "/129 is too long for IPv6",
        ),
        (encode_len_field(7, encode_len_field(3, encode_len_field(1, bytes(3)))), "got 3"),
        (
            encode_len_field(7, encode_len_field(3, encode_len_field(1, b"") + b"\x10\x08")),
            "additional_addresses: prefix without an IP",
        ),
        (
            encode_len_field(7, encode_len_field(4, encode_varint_field(1, 4))),
            "kubespan.exclude_advertised_addresses.ip: wrong wire type VARINT",
        ),
    ],
)
def test_invalid_records_raise_record_error(data: bytes, message: str) -> None:
    with pytest.raises(RecordError, match=message.replace("(", r"\(")):
        decode_affiliate(data)


def test_full_length_prefixes_are_accepted() -> None:
    v4 = encode_len_field(1, bytes(4)) + encode_varint_field(2, 32)
    v6 = encode_len_field(1, bytes(16)) + encode_varint_field(2, 128)
    record = decode_affiliate(
        encode_len_field(7, encode_len_field(3, v4) + encode_len_field(3, v6))
    )
    assert record.kubespan is not None
    assert record.kubespan.additional_addresses == (
        IPv4Network("0.0.0.0/32"),
        IPv6Network("::/128"),
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "endpoint.ip: IP must be 4 or 16 bytes, got 0"),
        (encode_len_field(1, bytes(6)), "got 6"),
        (encode_len_field(1, bytes(4)) + encode_varint_field(2, 65536), "port out of range"),
        (encode_varint_field(1, 4), "endpoint.ip: wrong wire type"),
        (encode_len_field(1, bytes(4)) + encode_len_field(2, b""), "port: wrong wire type"),
    ],
)
def test_invalid_endpoints_raise_record_error(data: bytes, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        decode_endpoint(data)
