"""Malformed wire input: whatever the protobuf parser refuses comes out as one RecordError."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from google.protobuf.message import DecodeError

from membership.errors import RecordError
from membership.record import EndpointAddr
from membership.talos_codec import decode_affiliate, decode_endpoint, encode_endpoint

# Each is refused by the parser whichever message it is read as; the id says what is wrong.
MALFORMED = {
    "field number 0": "00",
    "field number 2**29": "8080808010",
    "wire type 6": "0e",
    "wire type 7": "0f",
    "end of group without a start": "0c",
    "unterminated group": "0b",
    "unterminated group after a field": "0b0801",
    "mismatched end of group": "0b14",
    "unterminated nested group": "0b1314",
    "truncated field inside a group": "0b0a05ab",
    "truncated LEN payload": "0a05abcd",
    "LEN without its length": "0a",
    "truncated length varint": "0a80",
    "truncated I64": "09000000",
    "truncated I32": "0d00",
    "VARINT without its value": "08",
    "varint longer than 10 bytes": "088080808080808080808000",
    "groups nested deeper than protobuf's limit": "0b" * 200 + "0c" * 200,
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_wire_input_is_a_record_error(data: str) -> None:
    for decode, name in ((decode_affiliate, "Affiliate"), (decode_endpoint, "Endpoint")):
        with pytest.raises(RecordError, match=f"^{name}: not a valid protobuf message") as info:
            decode(bytes.fromhex(data))
        # The parser's own error is kept as the cause, for debugging; it never escapes alone.
        assert isinstance(info.value.__cause__, DecodeError)


IP = "0a040a000002"  # Endpoint field 1: 10.0.0.2


@pytest.mark.parametrize(
    ("port", "varint"),
    [(1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (51820, "ec9403"), (65535, "ffff03")],
)
def test_port_varints_known_answers(port: int, varint: str) -> None:
    endpoint = EndpointAddr(IPv4Address("10.0.0.2"), port)
    data = bytes.fromhex(IP + "10" + varint)
    assert encode_endpoint(endpoint) == data
    assert decode_endpoint(data) == endpoint


@pytest.mark.parametrize(
    ("varint", "message"),
    [
        ("", "not a valid protobuf message"),
        ("80", "not a valid protobuf message"),
        ("8080808080808080808000", "not a valid protobuf message"),
        # protobuf keeps the low 32 bits of an oversized uint32 (as Go does); still no port.
        ("ffffffffffffffffff01", "endpoint.port out of range"),
        # Past 64 bits: upb truncates like the case above, other runtimes refuse the varint.
        ("ffffffffffffffffff02", "endpoint.port out of range|not a valid protobuf message"),
    ],
)
def test_malformed_port_varints_are_record_errors(varint: str, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        decode_endpoint(bytes.fromhex(IP + "10" + varint))
