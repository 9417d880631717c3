"""The kernel as `ip`, `wg` and `nft` show it, for testing the real Device through argv."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubespan.identity import public_key_of
from kubespan.wg import WgError
from tests.fakes import FakePeer, FakeRunner


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return b""


def _wg_error(argv: Sequence[str], rc: int, message: str) -> WgError:
    return WgError(list(argv[0:2]), rc, message)


@dataclass
class FakeKernel:
    """A pretend machine behind a FakeRunner: NICs for `ip addr`, one WireGuard link that
    `wg set` edits and `wg show dump` reports, policy rules and the last nft script.

    It answers the argv the real Device runs, so it only serves the Device's own tests;
    everything above the device seam uses tests/fakes.py's FakeDevice.
    """

    mac: str = "02:00:00:00:00:01"
    addresses: list[tuple[str, str, int]] = field(
        default_factory=lambda: [("eth0", "10.99.0.11", 24)]
    )
    kernel_wireguard: bool = False
    link: str | None = None
    link_kind: str | None = None
    private_key: str | None = None
    listen_port: int = 0
    fwmark: int = 0
    peers: dict[str, FakePeer] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=lambda: {"-4": 0, "-6": 0})
    nft: str | None = None
    failing: dict[str, str] = field(default_factory=dict)
    """Public keys whose `wg set` fails, with the error wg prints (ENOMEM, a race...)."""

    def install(self, runner: FakeRunner) -> FakeRunner:
        runner.on("ip", "-j", "-d", "addr", "show", output=self._ip_addr)
        runner.on("ip", "-j", "-d", "link", "show", output=self._ip_link)
        runner.on("ip", "link", "add", output=self._link_add)
        runner.on("ip", "link", "del", output=self._link_del)
        runner.on("wireguard-go", output=self._wireguard_go)
        for family in ("-4", "-6"):
            runner.on("ip", "-j", family, "rule", "show", output=self._rule_show)
            runner.on("ip", family, "rule", output=self._rule_change)
        runner.on("wg", "show", output=self._wg_show)
        runner.on("wg", "set", output=self._wg_set)
        runner.on("nft", "-f", "-", output=self._nft)
        return runner

    def _ip_addr(self, argv: list[str], stdin: bytes | None) -> bytes:
        links: dict[str, dict[str, Any]] = {
            "lo": {
                "ifname": "lo",
                "flags": ["LOOPBACK", "UP"],
                "link_type": "loopback",
                "address": "00:00:00:00:00:00",
                "addr_info": [],
            },
        }
        for name, ip, prefixlen in self.addresses:
            link = links.setdefault(
                name,
                {
                    "ifname": name,
                    "flags": ["BROADCAST", "UP"],
                    "link_type": "ether",
                    "address": self.mac,
                    "addr_info": [],
                },
            )
            link["addr_info"].append(
                {
                    "family": "inet6" if ":" in ip else "inet",
                    "local": ip,
                    "prefixlen": prefixlen,
                    "scope": "global",
                }
            )
        return json.dumps(list(links.values())).encode()

    def _ip_link(self, argv: list[str], stdin: bytes | None) -> bytes:
        if self.link is None or argv[-1] != self.link:
            raise _wg_error(argv, 1, f'Device "{argv[-1]}" does not exist.')
        info = {"ifname": self.link, "link_type": "none", "linkinfo": {"info_kind": self.link_kind}}
        return json.dumps([info]).encode()

    def _create(self, name: str, kind: str) -> None:
        self.link, self.link_kind = name, kind
        self.private_key, self.listen_port, self.fwmark, self.peers = None, 0, 0, {}

    def _link_add(self, argv: list[str], stdin: bytes | None) -> bytes:
        if not self.kernel_wireguard:
            raise _wg_error(argv, 2, "Error: Unknown device type.")
        self._create(argv[argv.index("dev") + 1], "wireguard")
        return b""

    def _wireguard_go(self, argv: list[str], stdin: bytes | None) -> bytes:
        self._create(argv[-1], "tun")
        return b""

    def _link_del(self, argv: list[str], stdin: bytes | None) -> bytes:
        if self.link is None:
            raise _wg_error(argv, 1, "Cannot find device")
        self.link = self.link_kind = None
        self.peers = {}
        return b""

    def _rule_show(self, argv: list[str], stdin: bytes | None) -> bytes:
        rule = {"priority": 32500, "src": "all", "fwmark": "0x40", "fwmask": "0x60", "table": "180"}
        return json.dumps([rule] * self.rules[argv[2]]).encode()

    def _rule_change(self, argv: list[str], stdin: bytes | None) -> bytes:
        family, action = argv[1], argv[3]
        if action == "add":
            self.rules[family] += 1
        elif self.rules[family] == 0:
            raise _wg_error(argv, 2, "RTNETLINK answers: No such file or directory")
        else:
            self.rules[family] -= 1
        return b""

    def dump(self) -> str:
        def key(value: str | None) -> str:
            return value or "(none)"

        public = public_key_of(self.private_key) if self.private_key else None
        fwmark = f"{self.fwmark:#x}" if self.fwmark else "off"
        lines = [f"{key(self.private_key)}\t{key(public)}\t{self.listen_port}\t{fwmark}"]
        for p in self.peers.values():
            lines.append(
                "\t".join(
                    [
                        p.public_key,
                        key(p.preshared_key),
                        key(p.endpoint),
                        ",".join(p.allowed_ips) or "(none)",
                        str(p.handshake),
                        str(p.rx),
                        str(p.tx),
                        str(p.keepalive) if p.keepalive else "off",
                    ]
                )
            )
        return "\n".join(lines) + "\n"

    def _wg_show(self, argv: list[str], stdin: bytes | None) -> bytes:
        if self.link is None or argv[2] != self.link:
            raise _wg_error(argv, 1, "Unable to access interface: No such device")
        return self.dump().encode()

    def _wg_set(self, argv: list[str], stdin: bytes | None) -> bytes:
        if self.link is None or argv[2] != self.link:
            raise _wg_error(argv, 1, "Unable to modify interface: No such device")
        args = argv[3:]
        while args and args[0] != "peer":
            option, value, args = args[0], args[1], args[2:]
            if option == "private-key":
                self.private_key = Path(value).read_text().strip()
            elif option == "listen-port":
                self.listen_port = int(value)
            elif option == "fwmark":
                self.fwmark = 0 if value == "off" else int(value, 0)
        if not args:
            return b""
        public_key, args = args[1], args[2:]
        if len(public_key) != 44 or len(_b64(public_key)) != 32:
            # wg's own check (key_from_base64): 44 characters of base64 for 32 bytes.
            raise _wg_error(argv, 1, "Key is not the correct length or format: `" + public_key)
        if public_key in self.failing:
            raise _wg_error(argv, 1, self.failing[public_key])
        if args == ["remove"]:
            self.peers.pop(public_key, None)
            return b""
        peer = self.peers.setdefault(public_key, FakePeer(public_key))
        while args:
            option, value, args = args[0], args[1], args[2:]
            if option == "preshared-key":
                text = Path(value).read_text().strip()
                peer.preshared_key = text or None
            elif option == "endpoint":
                peer.endpoint = value
            elif option == "persistent-keepalive":
                peer.keepalive = 0 if value == "off" else int(value)
            elif option == "allowed-ips":
                peer.allowed_ips = tuple(v for v in value.split(",") if v)
        return b""

    def _nft(self, argv: list[str], stdin: bytes | None) -> bytes:
        self.nft = (stdin or b"").decode()
        return b""
