"""Known-answer vectors for the Talos codec tests: a full record and endpoints, with their bytes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from membership.record import AffiliateRecord, EndpointAddr, KubeSpanInfo

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
