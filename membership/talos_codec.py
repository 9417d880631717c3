"""AffiliateRecord and EndpointAddr <-> the bytes of Talos' `sidero.discovery.client` messages.

Schema: siderolabs/discovery-api `api/v1alpha1/client/affiliate.proto`:

    Affiliate    {1 node_id string, 2 addresses repeated bytes, 3 hostname, 4 nodename,
                  5 machine_type, 6 operating_system, 7 kubespan optional KubeSpan,
                  8 control_plane optional ControlPlane}
    KubeSpan     {1 public_key string, 2 address bytes, 3 additional_addresses repeated IPPrefix,
                  4 exclude_advertised_addresses repeated IPPrefix}
    IPPrefix     {1 ip bytes, 2 bits uint32}
    ControlPlane {1 api_server_port uint32}
    Endpoint     {1 ip bytes, 2 port uint32}

Encoding matches Go (vtproto) `MarshalVT` byte for byte: ascending field numbers, proto3 defaults
omitted, present sub-messages written even when empty. IPs are Go `netip.Addr.MarshalBinary`:
4 bytes for IPv4, 16 for IPv6.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from membership.errors import RecordError
from membership.protowire import (
    FieldValue,
    WireType,
    encode_len_field,
    encode_varint_field,
    iter_fields,
)
from membership.record import (
    AffiliateRecord,
    EndpointAddr,
    IPAddress,
    IPNetwork,
    KubeSpanInfo,
)

_PORT_MAX = 0xFFFF


# --- encoding -------------------------------------------------------------------------------


def _string(field_number: int, value: str) -> bytes:
    return encode_len_field(field_number, value.encode("utf-8")) if value else b""


def _uint(field_number: int, value: int) -> bytes:
    return encode_varint_field(field_number, value) if value else b""


def _check_port(value: int, name: str) -> None:
    if not 0 <= value <= _PORT_MAX:
        raise ValueError(f"{name} out of range 0..65535: {value}")


def _encode_prefix(prefix: IPNetwork) -> bytes:
    return encode_len_field(1, prefix.network_address.packed) + _uint(2, prefix.prefixlen)


def _encode_kubespan(kubespan: KubeSpanInfo) -> bytes:
    out = bytearray(_string(1, kubespan.public_key))
    if kubespan.address is not None:
        out += encode_len_field(2, kubespan.address.packed)
    for prefix in kubespan.additional_addresses:
        out += encode_len_field(3, _encode_prefix(prefix))
    for prefix in kubespan.exclude_advertised_addresses:
        out += encode_len_field(4, _encode_prefix(prefix))
    return bytes(out)


def encode_affiliate(record: AffiliateRecord) -> bytes:
    """Marshal a record as Go's Affiliate.MarshalVT; ValueError on a bad port or unencodable str."""
    out = bytearray(_string(1, record.node_id))
    for address in record.addresses:
        out += encode_len_field(2, address.packed)
    out += _string(3, record.hostname)
    out += _string(4, record.nodename)
    out += _string(5, record.machine_type)
    out += _string(6, record.operating_system)
    if record.kubespan is not None:
        out += encode_len_field(7, _encode_kubespan(record.kubespan))
    if record.api_server_port is not None:
        _check_port(record.api_server_port, "api_server_port")
        out += encode_len_field(8, _uint(1, record.api_server_port))
    return bytes(out)


def encode_endpoint(endpoint: EndpointAddr) -> bytes:
    """Marshal an endpoint as Go's Endpoint.MarshalVT; ValueError on an out-of-range port."""
    _check_port(endpoint.port, "port")
    return encode_len_field(1, endpoint.ip.packed) + _uint(2, endpoint.port)


# --- decoding -------------------------------------------------------------------------------


def _as_bytes(wire_type: WireType, value: FieldValue, name: str) -> bytes:
    if wire_type is not WireType.LEN or not isinstance(value, bytes):
        raise RecordError(f"{name}: wrong wire type {wire_type.name}")
    return value


def _as_uint(wire_type: WireType, value: FieldValue, name: str) -> int:
    if wire_type is not WireType.VARINT or not isinstance(value, int):
        raise RecordError(f"{name}: wrong wire type {wire_type.name}")
    return value


def _as_str(wire_type: WireType, value: FieldValue, name: str) -> str:
    try:
        return _as_bytes(wire_type, value, name).decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError(f"{name}: invalid UTF-8") from None


def _as_port(wire_type: WireType, value: FieldValue, name: str) -> int:
    port = _as_uint(wire_type, value, name)
    if port > _PORT_MAX:
        raise RecordError(f"{name} out of range 0..65535: {port}")
    return port


def _ip(raw: bytes, name: str) -> IPAddress:
    if len(raw) == 4:
        return IPv4Address(raw)
    if len(raw) == 16:
        return IPv6Address(raw)
    raise RecordError(f"{name}: IP must be 4 or 16 bytes, got {len(raw)}")


def _decode_prefix(data: bytes, name: str) -> IPNetwork:
    ip: IPAddress | None = None
    bits = 0
    for number, wire_type, value in iter_fields(data):
        if number == 1:
            ip = _ip(_as_bytes(wire_type, value, name), name)
        elif number == 2:
            bits = _as_uint(wire_type, value, name)
    if ip is None:
        raise RecordError(f"{name}: prefix without an IP")
    if bits > ip.max_prefixlen:
        raise RecordError(f"{name}: /{bits} is too long for IPv{ip.version}")
    # Talos sends prefixes with host bits set (e.g. 10.244.3.1/24, see discovery_service_test.go);
    # masking them keeps the network, which is all AllowedIPs and routing look at.
    if isinstance(ip, IPv4Address):
        return IPv4Network((ip, bits), strict=False)
    return IPv6Network((ip, bits), strict=False)


def _decode_kubespan(data: bytes) -> KubeSpanInfo:
    public_key = ""
    address: IPv6Address | None = None
    additional: list[IPNetwork] = []
    exclude: list[IPNetwork] = []
    for number, wire_type, value in iter_fields(data):
        if number == 1:
            public_key = _as_str(wire_type, value, "kubespan.public_key")
        elif number == 2:
            raw = _as_bytes(wire_type, value, "kubespan.address")
            if not raw:
                address = None
            elif len(raw) == 16:
                address = IPv6Address(raw)
            else:
                raise RecordError(f"kubespan.address must be 16 bytes, got {len(raw)}")
        elif number == 3:
            name = "kubespan.additional_addresses"
            additional.append(_decode_prefix(_as_bytes(wire_type, value, name), name))
        elif number == 4:
            name = "kubespan.exclude_advertised_addresses"
            exclude.append(_decode_prefix(_as_bytes(wire_type, value, name), name))
    return KubeSpanInfo(
        public_key=public_key,
        address=address,
        additional_addresses=tuple(additional),
        exclude_advertised_addresses=tuple(exclude),
    )


def _decode_control_plane(data: bytes) -> int:
    port = 0
    for number, wire_type, value in iter_fields(data):
        if number == 1:
            port = _as_port(wire_type, value, "control_plane.api_server_port")
    return port


def decode_affiliate(data: bytes) -> AffiliateRecord:
    """Unmarshal an Affiliate; unknown fields are skipped; RecordError on anything invalid."""
    strings = {3: "", 4: "", 5: "", 6: ""}
    names = {3: "hostname", 4: "nodename", 5: "machine_type", 6: "operating_system"}
    node_id = ""
    addresses: list[IPAddress] = []
    # A sub-message seen several times is merged (protobuf semantics); concatenating the encoded
    # parts and decoding once is exactly that merge.
    kubespan_parts: list[bytes] | None = None
    control_plane_parts: list[bytes] | None = None
    for number, wire_type, value in iter_fields(data):
        if number == 1:
            node_id = _as_str(wire_type, value, "node_id")
        elif number == 2:
            addresses.append(_ip(_as_bytes(wire_type, value, "addresses"), "addresses"))
        elif number in strings:
            strings[number] = _as_str(wire_type, value, names[number])
        elif number == 7:
            kubespan_parts = kubespan_parts or []
            kubespan_parts.append(_as_bytes(wire_type, value, "kubespan"))
        elif number == 8:
            control_plane_parts = control_plane_parts or []
            control_plane_parts.append(_as_bytes(wire_type, value, "control_plane"))
    return AffiliateRecord(
        node_id=node_id,
        addresses=tuple(addresses),
        hostname=strings[3],
        nodename=strings[4],
        machine_type=strings[5],
        operating_system=strings[6],
        kubespan=None if kubespan_parts is None else _decode_kubespan(b"".join(kubespan_parts)),
        api_server_port=(
            None
            if control_plane_parts is None
            else _decode_control_plane(b"".join(control_plane_parts))
        ),
    )


def decode_endpoint(data: bytes) -> EndpointAddr:
    """Unmarshal an Endpoint; RecordError unless it holds a 4/16-byte IP and a port <= 65535."""
    raw_ip = b""
    port = 0
    for number, wire_type, value in iter_fields(data):
        if number == 1:
            raw_ip = _as_bytes(wire_type, value, "endpoint.ip")
        elif number == 2:
            port = _as_port(wire_type, value, "endpoint.port")
    return EndpointAddr(_ip(raw_ip, "endpoint.ip"), port)
