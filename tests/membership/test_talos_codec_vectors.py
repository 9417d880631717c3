"""The Talos codec on known-answer byte vectors: encoding, decoding, defaults, port range."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from membership.record import AffiliateRecord, EndpointAddr, KubeSpanInfo
from membership.talos_codec import (
    decode_affiliate,
    decode_endpoint,
    encode_affiliate,
    encode_endpoint,
)
from tests.membership.talos_codec_support import (
    ENDPOINT_V4,
    ENDPOINT_V4_BYTES,
    ENDPOINT_V6,
    ENDPOINT_V6_BYTES,
    FULL_RECORD,
    FULL_RECORD_BYTES,
)


def test_full_record_encodes_to_known_bytes() -> None:
    assert encode_affiliate(FULL_RECORD) == FULL_RECORD_BYTES


def test_full_record_decodes_from_known_bytes() -> None:
    assert decode_affiliate(FULL_RECORD_BYTES) == FULL_RECORD


def test_endpoints_encode_to_known_bytes() -> None:
    assert encode_endpoint(ENDPOINT_V4) == ENDPOINT_V4_BYTES
    assert encode_endpoint(ENDPOINT_V6) == ENDPOINT_V6_BYTES
    assert decode_endpoint(ENDPOINT_V4_BYTES) == ENDPOINT_V4
    assert decode_endpoint(ENDPOINT_V6_BYTES) == ENDPOINT_V6


def test_endpoints_print_as_host_port() -> None:
    assert str(ENDPOINT_V4) == "10.0.0.2:51820"
    assert str(ENDPOINT_V6) == "[2001:db8::1]:51820"


def test_defaults_are_omitted() -> None:
    assert encode_affiliate(AffiliateRecord(node_id="")) == b""
    assert decode_affiliate(b"") == AffiliateRecord(node_id="")
    assert encode_endpoint(EndpointAddr(IPv4Address("1.2.3.4"), 0)) == bytes.fromhex("0a0401020304")


def test_present_but_empty_submessages_are_written() -> None:
    record = AffiliateRecord(node_id="", kubespan=KubeSpanInfo(public_key=""), api_server_port=0)
    assert encode_affiliate(record) == bytes.fromhex("3a00" + "4200")
    assert decode_affiliate(bytes.fromhex("3a004200")) == record


def test_encode_rejects_out_of_range_ports() -> None:
    with pytest.raises(ValueError, match="api_server_port"):
        encode_affiliate(AffiliateRecord(node_id="n", api_server_port=65536))
    with pytest.raises(ValueError, match="port"):
        encode_endpoint(EndpointAddr(IPv4Address("1.2.3.4"), -1))
