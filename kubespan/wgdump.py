"""Parse `wg show <if> dump`: the device's actual state, as plan.py diffs it.

Format (wireguard-tools `show.c`, tab-separated, one record per line):
  interface: private-key public-key listen-port fwmark
  each peer: public-key preshared-key endpoint allowed-ips latest-handshake rx tx keepalive
Unset values print as `(none)` (keys, endpoint, allowed-ips) or `off` (fwmark, keepalive);
a latest-handshake of 0 means "never".
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from ipaddress import IPv6Address, ip_address, ip_network

from membership.record import EndpointAddr, IPNetwork

_NONE = "(none)"
_OFF = "off"


class WgDumpError(ValueError):
    """The text is not `wg show <if> dump` output; the message names the line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerState:
    """One peer as the device reports it."""

    public_key: str
    # repr=False: the dump carries the real PSK, which must not reach logs.
    preshared_key: str | None = field(default=None, repr=False)
    endpoint: EndpointAddr | None = None
    allowed_ips: tuple[IPNetwork, ...] = ()
    latest_handshake: datetime | None = None
    rx: int = 0
    tx: int = 0
    persistent_keepalive: int = 0
    """Seconds; 0 means off."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceState:
    """The device: interface settings and its peers in dump order."""

    private_key: str | None = field(default=None, repr=False)
    public_key: str | None = None
    listen_port: int = 0
    fwmark: int = 0
    """0 means off."""
    peers: tuple[PeerState, ...] = ()


def parse_endpoint(text: str) -> EndpointAddr:
    """Parse `IP:port` or `[IPv6]:port` (wg's notation); raises ValueError."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"not [IPv6]:port: {text!r}")
        ip = ip_address(host)
        if not isinstance(ip, IPv6Address):
            raise ValueError(f"brackets are for IPv6 only: {text!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"not IP:port (IPv6 needs brackets): {text!r}")
        ip = ip_address(host)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {text!r}")
    return EndpointAddr(ip, int(port))


def _key(value: str, what: str) -> str | None:
    if value == _NONE:
        return None
    try:
        if len(base64.b64decode(value, validate=True)) == 32:
            return value
    except binascii.Error:
        pass
    raise ValueError(f"{what} is not a base64 WireGuard key")


def _uint(value: str, what: str, *, base: int = 10) -> int:
    if value == _OFF:
        return 0
    try:
        number = int(value, base)
    except ValueError:
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if number < 0:
        raise ValueError(f"{what} is negative: {value!r}")
    return number


def _parse_peer(cols: list[str]) -> PeerState:
    if len(cols) != 8:
        raise ValueError(f"expected 8 peer fields, got {len(cols)}")
    public_key = _key(cols[0], "public key")
    if public_key is None:
        raise ValueError("peer without public key")
    allowed = (
        () if cols[3] == _NONE else tuple(ip_network(c, strict=False) for c in cols[3].split(","))
    )
    handshake = _uint(cols[4], "latest handshake")
    return PeerState(
        public_key=public_key,
        preshared_key=_key(cols[1], "preshared key"),
        endpoint=None if cols[2] == _NONE else parse_endpoint(cols[2]),
        allowed_ips=allowed,
        latest_handshake=datetime.fromtimestamp(handshake, UTC) if handshake else None,
        rx=_uint(cols[5], "rx"),
        tx=_uint(cols[6], "tx"),
        persistent_keepalive=_uint(cols[7], "persistent keepalive"),
    )


def _parse_interface(cols: list[str]) -> DeviceState:
    if len(cols) != 4:
        raise ValueError(f"expected 4 interface fields, got {len(cols)}")
    return DeviceState(
        private_key=_key(cols[0], "private key"),
        public_key=_key(cols[1], "public key"),
        listen_port=_uint(cols[2], "listen port"),
        fwmark=_uint(cols[3], "fwmark", base=0),
    )


def parse_wg_dump(text: str) -> DeviceState:
    """Parse `wg show <if> dump` output; raises WgDumpError naming the bad line."""
    lines = [(n, line.split("\t")) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise WgDumpError("wg dump: empty output")
    number = lines[0][0]
    try:
        device = _parse_interface(lines[0][1])
        peers: list[PeerState] = []
        for number, cols in lines[1:]:  # noqa: B007 - read by the error message below
            peers.append(_parse_peer(cols))
    except ValueError as exc:
        raise WgDumpError(f"wg dump line {number}: {exc}") from None
    return replace(device, peers=tuple(peers))
