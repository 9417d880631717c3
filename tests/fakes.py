"""Fakes for the layers above the real adapters (never a substitute for testing those)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from discovery.client import (
    ClientError,
    Deleted,
    HelloReply,
    RawAffiliate,
    Snapshot,
    Updated,
    WatchEvent,
)
from kubespan.identity import public_key_of
from kubespan.wg import WgError


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


# -- kubespan: the system seam (kubespan/wg.py) ------------------------------------------

RunHandler = Callable[[list[str], bytes | None], bytes]


class FakeRunner:
    """A Runner that records argv (and stdin) and answers by the longest matching prefix.

    Unmatched commands succeed with empty output. Canned answers are bytes, an exception to
    raise, or a handler called with (argv, stdin).
    """

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.stdins: list[bytes | None] = []
        self._canned: list[tuple[tuple[str, ...], bytes | Exception | RunHandler]] = []

    def on(self, *prefix: str, output: bytes | str | Exception | RunHandler = b"") -> None:
        answer = output.encode() if isinstance(output, str) else output
        self._canned.append((prefix, answer))

    async def run(self, argv: Sequence[str], *, stdin: bytes | None = None) -> bytes:
        args = list(argv)
        self.calls.append(args)
        self.stdins.append(stdin)
        best: bytes | Exception | RunHandler = b""
        best_len = -1
        for prefix, answer in self._canned:
            # Later registrations win ties, so a test can override a default.
            if tuple(args[: len(prefix)]) == prefix and len(prefix) >= best_len:
                best, best_len = answer, len(prefix)
        if isinstance(best, Exception):
            raise best
        if callable(best):
            return best(args, stdin)
        return best

    def commands(self, *prefix: str) -> list[list[str]]:
        """The recorded argvs that start with `prefix`."""
        return [c for c in self.calls if tuple(c[: len(prefix)]) == prefix]


def _wg_error(argv: Sequence[str], rc: int, message: str) -> WgError:
    return WgError(list(argv[0:2]), rc, message)


@dataclass
class FakePeer:
    public_key: str
    preshared_key: str | None = None
    endpoint: str | None = None
    allowed_ips: tuple[str, ...] = ()
    handshake: int = 0
    rx: int = 0
    tx: int = 0
    keepalive: int = 0


@dataclass
class FakeHost:
    """A pretend machine behind a FakeRunner: NICs for `ip addr`, one WireGuard link that
    `wg set` edits and `wg show dump` reports, policy rules and the last nft script."""

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


# -- kubespan: discovery (discovery/client.py) -------------------------------------------


@dataclass
class FakeDiscovery:
    """An in-memory discovery service for agent tests; `client()` is a DiscoveryClient.

    `down = True` makes every call fail and breaks open watches, like a stopped service.
    """

    url: str = "http://discovery.test:3001"
    client_ip: str | None = "203.0.113.7"
    redirect: str | None = None
    affiliates: dict[str, dict[str, RawAffiliate]] = field(default_factory=dict)
    revision: int = 0
    updates: list[tuple[str, str, bytes | None, tuple[bytes, ...], timedelta]] = field(
        default_factory=list
    )
    deletes: list[tuple[str, str]] = field(default_factory=list)
    hellos: int = 0
    watch_since: list[int | None] = field(default_factory=list)
    _down: bool = False
    _watchers: list[asyncio.Queue[WatchEvent | Exception]] = field(default_factory=list)

    def client(self) -> FakeDiscoveryClient:
        return FakeDiscoveryClient(self)

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self._down = value
        if value:
            for queue in self._watchers:
                queue.put_nowait(ClientError("connection reset", retryable=True))

    def check(self) -> None:
        if self._down:
            raise ClientError("discovery service unreachable: connection refused", retryable=True)

    def put(self, cluster: str, affiliate: RawAffiliate) -> None:
        """Store an affiliate as an update from some node would (data replaces, endpoints merge)."""
        current = self.affiliates.setdefault(cluster, {}).get(affiliate.id)
        if current is not None:
            merged = current.endpoints + tuple(
                e for e in affiliate.endpoints if e not in current.endpoints
            )
            data = affiliate.data if affiliate.data else current.data
            affiliate = RawAffiliate(affiliate.id, data, merged)
        self.affiliates[cluster][affiliate.id] = affiliate
        self.revision += 1
        self._notify(Updated(affiliate, self.revision))

    def remove(self, cluster: str, affiliate_id: str) -> None:
        if self.affiliates.get(cluster, {}).pop(affiliate_id, None) is not None:
            self.revision += 1
            self._notify(Deleted(affiliate_id, self.revision))

    def _notify(self, event: WatchEvent) -> None:
        for queue in self._watchers:
            queue.put_nowait(event)


class FakeDiscoveryClient:
    def __init__(self, service: FakeDiscovery) -> None:
        self.service = service
        self.endpoint = service.url
        self.closed = False

    async def hello(self, cluster_id: str, client_version: str) -> HelloReply:
        self.service.check()
        self.service.hellos += 1
        ip = ip_address(self.service.client_ip) if self.service.client_ip else None
        return HelloReply(client_ip=ip, redirect=self.service.redirect)

    async def update(
        self,
        cluster_id: str,
        affiliate_id: str,
        *,
        data: bytes | None,
        endpoints: Sequence[bytes],
        ttl: timedelta,
    ) -> None:
        self.service.check()
        self.service.updates.append((cluster_id, affiliate_id, data, tuple(endpoints), ttl))
        self.service.put(cluster_id, RawAffiliate(affiliate_id, data or b"", tuple(endpoints)))

    async def delete(self, cluster_id: str, affiliate_id: str) -> None:
        self.service.check()
        self.service.deletes.append((cluster_id, affiliate_id))
        self.service.remove(cluster_id, affiliate_id)

    async def list(self, cluster_id: str) -> list[RawAffiliate]:
        self.service.check()
        return list(self.service.affiliates.get(cluster_id, {}).values())

    async def watch(
        self, cluster_id: str, *, since: int | None = None
    ) -> AsyncIterator[WatchEvent]:
        self.service.check()
        self.service.watch_since.append(since)
        queue: asyncio.Queue[WatchEvent | Exception] = asyncio.Queue()
        self.service._watchers.append(queue)
        try:
            affiliates = tuple(self.service.affiliates.get(cluster_id, {}).values())
            yield Snapshot(affiliates, self.service.revision)
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.service._watchers.remove(queue)

    async def aclose(self) -> None:
        self.closed = True
