"""A test cluster: records sealed the Talos way (membership.sealing) and published over HTTP."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from urllib.parse import quote

import httpx

from membership.record import AffiliateRecord, EndpointAddr, KubeSpanInfo
from membership.sealing import ClusterKey, seal_data, seal_endpoint_addr, seal_record
from membership.secrets import new_cluster_id, new_cluster_secret
from membership.talos_codec import encode_affiliate


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def record(name: str, n: int) -> AffiliateRecord:
    return AffiliateRecord(
        node_id=f"node-id-{name}",
        addresses=(IPv4Address(f"10.5.0.{n}"), IPv6Address(f"fd00:5::{n}")),
        hostname=name,
        nodename=name,
        machine_type="controlplane" if n == 1 else "worker",
        operating_system="Talos (v1.9.0)",
        kubespan=KubeSpanInfo(
            public_key=b64(bytes([n]) * 32),
            address=IPv6Address(f"fd7a:115c:a1e0::{n}"),
            additional_addresses=(IPv6Network(f"fd00:{n}::/64"),),
        ),
        api_server_port=6443 if n == 1 else None,
    )


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + payload


def mesh_health(peers: list[tuple[bytes, int, int, int]], *, omitted: int = 0) -> bytes:
    """Affiliate field 1000 as the agents publish it (membership/health.py on the mesh side):
    MeshHealth {1: observed_at, 2: 8 bytes per peer, 3: omitted}; each peer is (first 4 bytes
    of its WireGuard key, state 0/1/2, flags bit 0 receiving | bit 1 session, handshake age)."""
    packed = b"".join(
        key[:4] + bytes((state, flags)) + age.to_bytes(2, "big") for key, state, flags, age in peers
    )
    message = bytes([1 << 3]) + _varint_bytes(int(time.time())) + _field(2, packed)
    if omitted:
        message += bytes([3 << 3]) + _varint_bytes(omitted)
    return _field(1000, message)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@dataclass
class Cluster:
    url: str
    cluster_id: str = field(default_factory=lambda: new_cluster_id(os.urandom(32)))
    secret: str = field(default_factory=lambda: new_cluster_secret(os.urandom(32)))

    @property
    def key(self) -> ClusterKey:
        return ClusterKey(self.secret)

    @property
    def dashboard(self) -> str:
        fragment = f"cluster={quote(self.cluster_id, safe='')}&secret={quote(self.secret, safe='')}"
        return f"{self.url}/ui#{fragment}"

    def put_raw(self, affiliate: str, data: bytes, endpoints: list[bytes]) -> int:
        body = {"data": b64(data), "endpoints": [b64(e) for e in endpoints], "ttl": 600}
        path = f"/v1/clusters/{quote(self.cluster_id, safe='')}/affiliates/{quote(affiliate)}"
        r = httpx.put(self.url + path, json=body, timeout=10)
        r.raise_for_status()
        revision: int = r.json()["revision"]
        return revision

    def put(
        self, affiliate: str, rec: AffiliateRecord, endpoints: list[str], extra: bytes = b""
    ) -> int:
        """Seal `rec` as a Talos node does (plus optional fields of ours) and publish it."""
        key = self.key
        data = (
            seal_data(key, encode_affiliate(rec) + extra, os.urandom(12))
            if extra
            else seal_record(key, rec, os.urandom(12))
        )
        sealed = []
        for text in endpoints:
            host, _, port = text.rpartition(":")
            sealed.append(
                seal_endpoint_addr(key, EndpointAddr(ip_address(host.strip("[]")), int(port)))
            )
        return self.put_raw(affiliate, data, sealed)

    def delete(self, affiliate: str) -> int:
        path = f"/v1/clusters/{quote(self.cluster_id, safe='')}/affiliates/{quote(affiliate)}"
        r = httpx.delete(self.url + path, timeout=10)
        r.raise_for_status()
        revision: int = r.json()["revision"]
        return revision
