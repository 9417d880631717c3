from __future__ import annotations

import base64
import contextlib
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_network,
)
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from hypothesis import given
from hypothesis import strategies as st

from membership.errors import RecordError
from membership.proto import affiliate_pb2
from membership.record import (
    AffiliateRecord,
    EndpointAddr,
    IPAddress,
    IPNetwork,
    KubeSpanInfo,
)
from membership.talos_codec import (
    decode_affiliate,
    decode_endpoint,
    encode_affiliate,
    encode_endpoint,
)
from tests.membership.wire import WireType, encode_len_field, encode_tag, encode_varint_field

# --- a fully populated record and its bytes, worked out field by field ----------------------

NODE_ID = "fwjO4YDNyAjLsoCKmQiIg4BHaghFUIBEOwgCIYABCAA"  # base62 of bytes(range(32))
PUBLIC_KEY = "PLPNBddmTgHJhtw0vxltq1ZBdPP9RNOEUd5JjJZzBRY="

FULL_RECORD = AffiliateRecord(
    node_id=NODE_ID,
    addresses=(IPv4Address("10.5.0.2"), IPv6Address("2001:db8::2")),
    hostname="talos-cp-1.example.org",
    nodename="talos-cp-1",
    machine_type="controlplane",
    operating_system="Talos (v1.9.0)",
    kubespan=KubeSpanInfo(
        public_key=PUBLIC_KEY,
        address=IPv6Address("fd50:8d60:4238:6302:f857:23ff:fe21:d1e0"),
        additional_addresses=(IPv4Network("10.244.3.0/24"), IPv6Network("fd00:10:244:3::/64")),
        exclude_advertised_addresses=(IPv4Network("0.0.0.0/0"),),
    ),
    api_server_port=6443,
)

# key = varint(field << 3 | wire type); LEN fields are key, varint length, payload.
FULL_RECORD_BYTES = bytes.fromhex(
    # 1 node_id (0x0a), 43 bytes
    "0a2b"
    + NODE_ID.encode().hex()
    # 2 addresses (0x12): 10.5.0.2 (4 bytes), 2001:db8::2 (16 bytes)
    + "12040a050002"
    + "121020010db8000000000000000000000002"
    # 3 hostname (0x1a), 22 bytes
    + "1a16"
    + b"talos-cp-1.example.org".hex()
    # 4 nodename (0x22), 10 bytes
    + "220a"
    + b"talos-cp-1".hex()
    # 5 machine_type (0x2a), 12 bytes
    + "2a0c"
    + b"controlplane".hex()
    # 6 operating_system (0x32), 14 bytes
    + "320e"
    + b"Talos (v1.9.0)".hex()
    # 7 kubespan (0x3a), 104 = 0x68 bytes:
    + "3a68"
    #   1 public_key (0x0a), 44 bytes
    + "0a2c"
    + PUBLIC_KEY.encode().hex()
    #   2 address (0x12), 16 bytes
    + "1210fd508d6042386302f85723fffe21d1e0"
    #   3 additional_addresses (0x1a): IPPrefix{1 ip (0x0a) 4 bytes, 2 bits (0x10) 24}
    + "1a08"
    + "0a040af40300"
    + "1018"
    #   3 additional_addresses: IPPrefix{ip 16 bytes, bits 64 = 0x40}
    + "1a14"
    + "0a10fd000010024400030000000000000000"
    + "1040"
    #   4 exclude_advertised_addresses (0x22): IPPrefix{ip 0.0.0.0}; bits 0 is the default: omitted
    + "2206"
    + "0a0400000000"
    # 8 control_plane (0x42), 3 bytes: 1 api_server_port (0x08) 6443 = varint ab 32
    + "4203"
    + "08ab32"
)

ENDPOINT_V4 = EndpointAddr(IPv4Address("10.0.0.2"), 51820)
# 1 ip (0x0a) 4 bytes; 2 port (0x10) 51820 = varint ec 94 03
ENDPOINT_V4_BYTES = bytes.fromhex("0a040a000002" + "10ec9403")
ENDPOINT_V6 = EndpointAddr(IPv6Address("2001:db8::1"), 51820)
ENDPOINT_V6_BYTES = bytes.fromhex("0a1020010db8000000000000000000000001" + "10ec9403")


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


# --- cross-check against the protobuf runtime (tests only) ----------------------------------


# Upstream's schema as the reference gives it (string fields are `string` here), built into its
# own descriptor pool: an independent oracle for the generated classes, which declare text as
# `bytes` (see affiliate.proto) and must be wire-identical to this.
_fd = descriptor_pb2.FieldDescriptorProto
_UPSTREAM_SCHEMA: dict[str, list[tuple[str, int, int, str]]] = {
    "Affiliate": [
        ("node_id", 1, _fd.TYPE_STRING, ""),
        ("addresses", 2, _fd.TYPE_BYTES, "repeated"),
        ("hostname", 3, _fd.TYPE_STRING, ""),
        ("nodename", 4, _fd.TYPE_STRING, ""),
        ("machine_type", 5, _fd.TYPE_STRING, ""),
        ("operating_system", 6, _fd.TYPE_STRING, ""),
        ("kubespan", 7, _fd.TYPE_MESSAGE, "KubeSpan"),
        ("control_plane", 8, _fd.TYPE_MESSAGE, "ControlPlane"),
    ],
    "KubeSpan": [
        ("public_key", 1, _fd.TYPE_STRING, ""),
        ("address", 2, _fd.TYPE_BYTES, ""),
        ("additional_addresses", 3, _fd.TYPE_MESSAGE, "repeated IPPrefix"),
        ("exclude_advertised_addresses", 4, _fd.TYPE_MESSAGE, "repeated IPPrefix"),
    ],
    "IPPrefix": [("ip", 1, _fd.TYPE_BYTES, ""), ("bits", 2, _fd.TYPE_UINT32, "")],
    "ControlPlane": [("api_server_port", 1, _fd.TYPE_UINT32, "")],
    "Endpoint": [("ip", 1, _fd.TYPE_BYTES, ""), ("port", 2, _fd.TYPE_UINT32, "")],
}


def _pb_messages() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="test_affiliate.proto", package="sidero.discovery.client", syntax="proto3"
    )
    for name, fields in _UPSTREAM_SCHEMA.items():
        message = file.message_type.add(name=name)
        for field_name, number, field_type, extra in fields:
            field = message.field.add(name=field_name, number=number, type=field_type)
            field.label = _fd.LABEL_REPEATED if "repeated" in extra else _fd.LABEL_OPTIONAL
            if field_type == _fd.TYPE_MESSAGE:
                field.type_name = ".sidero.discovery.client." + extra.split()[-1]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"sidero.discovery.client.{name}")
        )
        for name in ("Affiliate", "Endpoint")
    }


_PB = _pb_messages()
OWN_FIELDS = 1000

# The text fields: `string` upstream, `bytes` in affiliate.proto, the same on the wire.
_TEXT_FIELDS = {
    ("Affiliate", name)
    for name in ("node_id", "hostname", "nodename", "machine_type", "operating_system")
} | {("KubeSpan", "public_key")}


def test_generated_schema_is_upstreams_field_for_field() -> None:
    generated = affiliate_pb2.DESCRIPTOR
    assert generated.package == "sidero.discovery.client"
    # Our own additions (mesh health) are numbered from OWN_FIELDS up and use messages of
    # their own; everything Talos reads is upstream's, field for field.
    assert set(generated.message_types_by_name) == set(_UPSTREAM_SCHEMA) | {"MeshHealth"}
    for message_name, fields in _UPSTREAM_SCHEMA.items():
        message = generated.message_types_by_name[message_name]
        ours = [f for f in message.fields if f.number >= OWN_FIELDS]
        assert all(f.message_type is None or f.message_type.name == "MeshHealth" for f in ours)
        assert len(message.fields) - len(ours) == len(fields)
        for name, number, field_type, extra in fields:
            field = message.fields_by_number[number]
            assert field.name == name
            assert field.is_repeated == ("repeated" in extra)
            text = (message_name, name) in _TEXT_FIELDS
            assert field.type == (_fd.TYPE_BYTES if text else field_type)
            if field_type == _fd.TYPE_MESSAGE:
                assert field.message_type is not None
                assert field.message_type.name == extra.split()[-1]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _prefix_json(prefix: IPNetwork) -> dict[str, Any]:
    return {"ip": _b64(prefix.network_address.packed), "bits": prefix.prefixlen}


def _record_json(record: AffiliateRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "node_id": record.node_id,
        "addresses": [_b64(a.packed) for a in record.addresses],
        "hostname": record.hostname,
        "nodename": record.nodename,
        "machine_type": record.machine_type,
        "operating_system": record.operating_system,
    }
    if record.kubespan is not None:
        ks = record.kubespan
        out["kubespan"] = {
            "public_key": ks.public_key,
            "address": _b64(ks.address.packed) if ks.address is not None else "",
            "additional_addresses": [_prefix_json(p) for p in ks.additional_addresses],
            "exclude_advertised_addresses": [
                _prefix_json(p) for p in ks.exclude_advertised_addresses
            ],
        }
    if record.api_server_port is not None:
        out["control_plane"] = {"api_server_port": record.api_server_port}
    return out


def _pb_serialize(kind: str, js: dict[str, Any]) -> bytes:
    message = _PB[kind]()
    json_format.ParseDict(js, message)
    data: bytes = message.SerializeToString(deterministic=True)
    return data


def test_full_record_matches_protobuf_runtime() -> None:
    assert _pb_serialize("Affiliate", _record_json(FULL_RECORD)) == FULL_RECORD_BYTES
    assert _pb_serialize("Endpoint", {"ip": _b64(ENDPOINT_V6.ip.packed), "port": 51820}) == (
        ENDPOINT_V6_BYTES
    )


# --- strategies -----------------------------------------------------------------------------

ips: st.SearchStrategy[IPAddress] = st.ip_addresses()
ipv6s: st.SearchStrategy[IPv6Address] = st.ip_addresses(v=6).map(IPv6Address)


def _network(ip: IPAddress) -> st.SearchStrategy[IPNetwork]:
    return st.integers(0, ip.max_prefixlen).map(lambda bits: ip_network((ip, bits), strict=False))


networks: st.SearchStrategy[IPNetwork] = ips.flatmap(_network)
ports = st.integers(0, 0xFFFF)
kubespans = st.builds(
    KubeSpanInfo,
    public_key=st.text(max_size=60),
    address=st.none() | ipv6s,
    additional_addresses=st.lists(networks, max_size=4).map(tuple),
    exclude_advertised_addresses=st.lists(networks, max_size=4).map(tuple),
)
records = st.builds(
    AffiliateRecord,
    node_id=st.text(max_size=60),
    addresses=st.lists(ips, max_size=5).map(tuple),
    hostname=st.text(max_size=30),
    nodename=st.text(max_size=30),
    machine_type=st.sampled_from(["", "controlplane", "worker", "init"]),
    operating_system=st.text(max_size=30),
    kubespan=st.none() | kubespans,
    api_server_port=st.none() | ports,
)
endpoints = st.builds(EndpointAddr, ips, ports)


@given(records)
def test_record_round_trips(record: AffiliateRecord) -> None:
    assert decode_affiliate(encode_affiliate(record)) == record


@given(records)
def test_record_encoding_matches_protobuf_runtime(record: AffiliateRecord) -> None:
    assert encode_affiliate(record) == _pb_serialize("Affiliate", _record_json(record))


@given(records)
def test_upstream_typed_bytes_decode_to_the_record(record: AffiliateRecord) -> None:
    assert decode_affiliate(_pb_serialize("Affiliate", _record_json(record))) == record


@given(endpoints)
def test_endpoint_round_trips_and_matches_protobuf_runtime(endpoint: EndpointAddr) -> None:
    data = encode_endpoint(endpoint)
    assert decode_endpoint(data) == endpoint
    js = {"ip": _b64(endpoint.ip.packed), "port": endpoint.port}
    assert data == _pb_serialize("Endpoint", js)


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


# --- validation -----------------------------------------------------------------------------


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
