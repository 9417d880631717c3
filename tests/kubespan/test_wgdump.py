from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_network
from pathlib import Path

import pytest

from kubespan.wgdump import DeviceState, PeerState, WgDumpError, parse_endpoint, parse_wg_dump
from membership.record import EndpointAddr

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = ["empty", "device-only", "three-peers", "no-allowed-ips"]


def plain(value: object) -> object:
    """A JSON view of parsed dump values, secrets included, to diff against golden files."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


@pytest.mark.parametrize("name", GOLDEN)
def test_golden(name: str) -> None:
    parsed = parse_wg_dump((FIXTURES / f"{name}.dump").read_text())
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    assert plain(parsed) == expected


def test_three_peers_in_detail() -> None:
    device = parse_wg_dump((FIXTURES / "three-peers.dump").read_text())
    assert device.public_key == "c8/LgGrhPQbEl8EdfMHqppaNEtyBIdrMgu5BPRVCDQU="
    assert (device.listen_port, device.fwmark) == (51820, 0x20)
    first, second, third = device.peers
    assert first.endpoint == EndpointAddr(IPv4Address("192.0.2.10"), 51820)
    assert first.allowed_ips == (
        ip_network("10.244.1.0/24"),
        ip_network("192.168.1.10/32"),
        ip_network("fd7f:175a:b97c:5602:2c1a:b6ff:fe53:8169/128"),
    )
    assert first.latest_handshake == datetime(2025, 11, 26, 15, 13, 20, tzinfo=UTC)
    assert (first.rx, first.tx, first.persistent_keepalive) == (12345678, 9876543, 25)
    assert second.endpoint == EndpointAddr(IPv6Address("fd00::1"), 51820)
    assert third.endpoint is None and third.preshared_key is None
    assert third.latest_handshake is None and third.persistent_keepalive == 0


def test_empty_device() -> None:
    assert parse_wg_dump((FIXTURES / "empty.dump").read_text()) == DeviceState(listen_port=35719)


def test_secrets_stay_out_of_repr() -> None:
    device = parse_wg_dump((FIXTURES / "three-peers.dump").read_text())
    assert device.private_key is not None and device.private_key not in repr(device)
    psk = device.peers[0].preshared_key
    assert psk is not None and psk not in repr(device.peers[0])


def test_trailing_blank_lines_are_ignored() -> None:
    text = (FIXTURES / "device-only.dump").read_text() + "\n\n"
    assert parse_wg_dump(text).peers == ()


def test_scoped_ipv6_endpoint() -> None:
    endpoint = parse_endpoint("[fe80::1%eth0]:51820")
    assert endpoint.ip == IPv6Address("fe80::1%eth0") and endpoint.port == 51820


@pytest.mark.parametrize(
    "text", ["fd00::1:51820", "[10.0.0.1]:1", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:x", "[::1]"]
)
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)


KEY = "UOIiJGUQAzBGUBZzsk4ZUe9QE2rS8b4+fsRIWvciBxs="
PEER = KEY + "\t(none)\t(none)\t(none)\t0\t0\t0\toff"
HEAD = "(none)\t(none)\t0\toff\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty output"),
        ("(none)\t(none)\t0", "line 1: expected 4 interface fields"),
        ("(none)\t(none)\tport\toff", "line 1: listen port is not a number"),
        ("(none)\tshort\t0\toff", "line 1: public key is not a base64 WireGuard key"),
        (HEAD + PEER + "\textra", "line 2: expected 8 peer fields"),
        (HEAD + "\n" + PEER.replace("0\t0\t0", "0\t-1\t0"), "line 3: rx is negative"),
        (HEAD + PEER.replace(KEY, "(none)"), "line 2: peer without public key"),
        (HEAD + PEER.replace("(none)\t0", "10.0.0.300/32\t0", 1), "line 2"),
        (HEAD + PEER.replace("(none)\t(none)\t(none)", "(none)\tnope\t(none)"), "line 2"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(WgDumpError, match=message):
        parse_wg_dump(text)


def test_peer_state_defaults() -> None:
    assert PeerState(public_key="k").allowed_ips == ()
