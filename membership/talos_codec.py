"""AffiliateRecord and EndpointAddr <-> Talos' `sidero.discovery.client` messages: the mapping.

The schema is membership/proto/affiliate.proto and the wire format is protobuf's own (the
generated classes, which do no I/O). The bytes match Go's vtproto `MarshalVT` byte for byte:
ascending field numbers, proto3 defaults omitted, present sub-messages written even when empty.
IPs are Go `netip.Addr.MarshalBinary`: 4 bytes for IPv4, 16 for IPv6.

What the schema cannot say is checked here, and every failure is a RecordError naming the
field: IP lengths, port and prefix ranges, UTF-8 of the text fields (declared `bytes` in the
.proto for that reason), and known fields sent with the wrong wire type. Unknown fields are
ignored: protobuf keeps them on the parsed message and the mapping never reads them, so records
from a newer Talos still decode. Field 1000 (mesh health) is ours; Talos skips it the same way.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from membership.errors import RecordError
from membership.health import MeshHealth, pack_peers, unpack_peers
from membership.proto import affiliate_pb2 as pb
from membership.record import (
    AffiliateRecord,
    EndpointAddr,
    IPAddress,
    IPNetwork,
    KubeSpanInfo,
)

_PORT_MAX = 0xFFFF
# Indexed by wire type number (https://protobuf.dev/programming-guides/encoding/).
_WIRE_TYPES = ("VARINT", "I64", "LEN", "SGROUP", "EGROUP", "I32")

_M = TypeVar("_M", bound=Message)


# --- encoding -------------------------------------------------------------------------------


def _check_port(value: int, name: str) -> None:
    if not 0 <= value <= _PORT_MAX:
        raise ValueError(f"{name} out of range 0..65535: {value}")


def _prefix_message(prefix: IPNetwork) -> pb.IPPrefix:
    return pb.IPPrefix(ip=prefix.network_address.packed, bits=prefix.prefixlen)


def _kubespan_message(kubespan: KubeSpanInfo) -> pb.KubeSpan:
    return pb.KubeSpan(
        public_key=kubespan.public_key.encode("utf-8"),
        address=b"" if kubespan.address is None else kubespan.address.packed,
        additional_addresses=[_prefix_message(p) for p in kubespan.additional_addresses],
        exclude_advertised_addresses=[
            _prefix_message(p) for p in kubespan.exclude_advertised_addresses
        ],
    )


def encode_affiliate(record: AffiliateRecord) -> bytes:
    """Marshal a record as Go's Affiliate.MarshalVT; ValueError on a bad port or unencodable str."""
    message = pb.Affiliate(
        node_id=record.node_id.encode("utf-8"),
        addresses=[address.packed for address in record.addresses],
        hostname=record.hostname.encode("utf-8"),
        nodename=record.nodename.encode("utf-8"),
        machine_type=record.machine_type.encode("utf-8"),
        operating_system=record.operating_system.encode("utf-8"),
    )
    # Presence of the two sub-messages is meaningful (a worker has no control_plane), so they
    # are set even when every field inside is a default.
    if record.kubespan is not None:
        message.kubespan.CopyFrom(_kubespan_message(record.kubespan))
    if record.api_server_port is not None:
        _check_port(record.api_server_port, "api_server_port")
        message.control_plane.SetInParent()
        message.control_plane.api_server_port = record.api_server_port
    if record.mesh_health is not None:
        health = record.mesh_health
        message.mesh_health.SetInParent()
        message.mesh_health.observed_at = health.observed_at
        message.mesh_health.peers = pack_peers(health.peers)
        message.mesh_health.omitted = health.omitted
    return message.SerializeToString(deterministic=True)


def encode_endpoint(endpoint: EndpointAddr) -> bytes:
    """Marshal an endpoint as Go's Endpoint.MarshalVT; ValueError on an out-of-range port."""
    _check_port(endpoint.port, "port")
    message = pb.Endpoint(ip=endpoint.ip.packed, port=endpoint.port)
    return message.SerializeToString(deterministic=True)


# --- decoding -------------------------------------------------------------------------------


def _reject_wrong_wire_types(message: Message, path: str) -> None:
    # Protobuf keeps a known field number that arrives with the wrong wire type as an unknown
    # field; Talos' vtproto decoder rejects it ("wrong wireType"), and so do we.
    unknown = UnknownFieldSet(message)
    by_number = message.DESCRIPTOR.fields_by_number
    for index in range(len(unknown)):
        field = by_number.get(unknown[index].field_number)
        if field is not None:
            wire_type = _WIRE_TYPES[unknown[index].wire_type]
            raise RecordError(f"{path}{field.name}: wrong wire type {wire_type}")
    for field, value in message.ListFields():
        if field.message_type is not None:
            for child in value if field.is_repeated else (value,):
                _reject_wrong_wire_types(child, f"{path}{field.name}.")


def _parse(message: _M, data: bytes, path: str) -> _M:
    # The one place where protobuf's errors become RecordError: nothing of protobuf escapes.
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        name = message.DESCRIPTOR.name
        raise RecordError(f"{name}: not a valid protobuf message ({exc})") from exc
    _reject_wrong_wire_types(message, path)
    return message


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError(f"{name}: invalid UTF-8") from None


def _port(value: int, name: str) -> int:
    if value > _PORT_MAX:
        raise RecordError(f"{name} out of range 0..65535: {value}")
    return value


def _ip(raw: bytes, name: str) -> IPAddress:
    if len(raw) == 4:
        return IPv4Address(raw)
    if len(raw) == 16:
        return IPv6Address(raw)
    raise RecordError(f"{name}: IP must be 4 or 16 bytes, got {len(raw)}")


def _prefix(message: pb.IPPrefix, name: str) -> IPNetwork:
    # proto3 cannot tell an absent ip from an empty one; neither is a network.
    if not message.ip:
        raise RecordError(f"{name}: prefix without an IP")
    ip = _ip(message.ip, name)
    if message.bits > ip.max_prefixlen:
        raise RecordError(f"{name}: /{message.bits} is too long for IPv{ip.version}")
    # Talos sends prefixes with host bits set (e.g. 10.244.3.1/24, see discovery_service_test.go);
    # masking them keeps the network, which is all AllowedIPs and routing look at.
    if isinstance(ip, IPv4Address):
        return IPv4Network((ip, message.bits), strict=False)
    return IPv6Network((ip, message.bits), strict=False)


def _kubespan(message: pb.KubeSpan) -> KubeSpanInfo:
    address: IPv6Address | None = None
    if len(message.address) == 16:
        address = IPv6Address(message.address)
    elif message.address:
        raise RecordError(f"kubespan.address must be 16 bytes, got {len(message.address)}")
    additional = "kubespan.additional_addresses"
    exclude = "kubespan.exclude_advertised_addresses"
    return KubeSpanInfo(
        public_key=_text(message.public_key, "kubespan.public_key"),
        address=address,
        additional_addresses=tuple(_prefix(p, additional) for p in message.additional_addresses),
        exclude_advertised_addresses=tuple(
            _prefix(p, exclude) for p in message.exclude_advertised_addresses
        ),
    )


def _mesh_health(message: pb.MeshHealth) -> MeshHealth:
    return MeshHealth(
        observed_at=message.observed_at,
        peers=unpack_peers(message.peers),
        omitted=message.omitted,
    )


def decode_affiliate(data: bytes) -> AffiliateRecord:
    """Unmarshal an Affiliate; unknown fields are ignored; RecordError on anything invalid."""
    message = _parse(pb.Affiliate(), data, "")
    api_server_port = None
    if message.HasField("control_plane"):
        name = "control_plane.api_server_port"
        api_server_port = _port(message.control_plane.api_server_port, name)
    return AffiliateRecord(
        node_id=_text(message.node_id, "node_id"),
        addresses=tuple(_ip(raw, "addresses") for raw in message.addresses),
        hostname=_text(message.hostname, "hostname"),
        nodename=_text(message.nodename, "nodename"),
        machine_type=_text(message.machine_type, "machine_type"),
        operating_system=_text(message.operating_system, "operating_system"),
        kubespan=_kubespan(message.kubespan) if message.HasField("kubespan") else None,
        api_server_port=api_server_port,
        mesh_health=_mesh_health(message.mesh_health) if message.HasField("mesh_health") else None,
    )


def decode_endpoint(data: bytes) -> EndpointAddr:
    """Unmarshal an Endpoint; RecordError unless it holds a 4/16-byte IP and a port <= 65535."""
    message = _parse(pb.Endpoint(), data, "endpoint.")
    return EndpointAddr(_ip(message.ip, "endpoint.ip"), _port(message.port, "endpoint.port"))
