"""The Talos codec cross-checked against the protobuf runtime and an upstream-typed schema."""

from __future__ import annotations

import base64
from ipaddress import IPv6Address, ip_network
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from hypothesis import given
from hypothesis import strategies as st

from membership.proto import affiliate_pb2
from membership.record import AffiliateRecord, EndpointAddr, IPAddress, IPNetwork, KubeSpanInfo
from membership.talos_codec import (
    decode_affiliate,
    decode_endpoint,
    encode_affiliate,
    encode_endpoint,
)
from tests.membership.talos_codec_support import (
    ENDPOINT_V6,
    ENDPOINT_V6_BYTES,
    FULL_RECORD,
    FULL_RECORD_BYTES,
)

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

# The text fields: `string` upstream, `bytes` in affiliate.proto, the same on the wire.
_TEXT_FIELDS = {
    ("Affiliate", name)
    for name in ("node_id", "hostname", "nodename", "machine_type", "operating_system")
} | {("KubeSpan", "public_key")}


OWN_FIELDS = 1000


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
